"""utils/run_logger.py: how a resumed run continues its W&B run (without a W&B server: a stand-in module)."""
import sys
import types

import pytest

from training.run_logger import RunLogger


def fake_wandb(with_rewind: bool):
    calls = []

    def init(project=None, name=None, dir=None, mode=None, settings=None, config=None, id=None, resume=None,
             **rest):
        calls.append(dict(config=config, id=id, resume=resume, **rest))
        return types.SimpleNamespace(id=id or "new-run", dir=f"{dir}/wandb/run/files", log=lambda *a, **k: None,
                                     finish=lambda: None)

    if with_rewind:
        def init_with_rewind(project=None, name=None, dir=None, mode=None, settings=None, config=None, id=None,
                             resume=None, resume_from=None):
            return init(project, name, dir, mode, settings, config, id, resume,
                        **({"resume_from": resume_from} if resume_from else {}))
        entry = init_with_rewind
    else:
        entry = init
    return types.SimpleNamespace(init=entry, Settings=lambda **k: k), calls


@pytest.mark.parametrize("with_rewind", [True, False])
def test_continuation_of_the_wandb_run(tmp_path, monkeypatch, with_rewind):
    module, calls = fake_wandb(with_rewind)
    monkeypatch.setitem(sys.modules, "wandb", module)
    monkeypatch.setenv("WANDB_MODE", "offline")

    def logger(**kwargs):
        return RunLogger(str(tmp_path), project="p", run_name="r", config={"lr": 1}, use_wandb=True, **kwargs)

    logger()  # a new run
    logger(resume_id="abc")  # a resume at the last logged step: the same run continues
    logger(resume_id="abc", rewind_step=500)  # from an older checkpoint: the run is rewound to it
    new, same, rewound = calls
    assert new == dict(config={"lr": 1}, id=None, resume=None)
    assert same == dict(config={"lr": 1}, id="abc", resume="allow")
    if with_rewind:  # W&B's rewind drops the abandoned steps from the run's history
        assert rewound == dict(config={"lr": 1}, id=None, resume=None, resume_from="abc?_step=500")
    else:  # a new run, linked to the old one through its config
        assert rewound == dict(config={"lr": 1, "rewound_from": {"run": "abc", "step": 500}}, id=None, resume=None)
