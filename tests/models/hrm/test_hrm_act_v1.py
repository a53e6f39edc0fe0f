import pytest
import torch

from tests.helpers import assert_compiled_prefix_loads, random_act_batch
from models.registry import model_class

ModelCls = model_class("hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1")
LossHeadCls = model_class("losses@ACTLossHead")

TINY = dict(batch_size=3, seq_len=6, num_puzzle_identifiers=5, vocab_size=7, puzzle_emb_ndim=20, H_cycles=2,
            L_cycles=2, H_layers=1, L_layers=1, hidden_size=16, expansion=2, num_heads=2, pos_encodings="rope",
            halt_max_steps=3, halt_exploration_prob=0.5, forward_dtype="float32")


def make_head(**overrides):
    torch.manual_seed(0)
    return LossHeadCls(ModelCls({**TINY, **overrides}), loss_type="stablemax_cross_entropy")


make_batch = random_act_batch  # its defaults (seq 6, vocab 7, 5 identifiers) are TINY's shapes


def test_published_sudoku_setting_has_27275266_parameters():
    model = ModelCls(dict(batch_size=2, seq_len=81, num_puzzle_identifiers=1, vocab_size=11, puzzle_emb_ndim=512,
                          H_cycles=2, L_cycles=2, H_layers=4, L_layers=4, hidden_size=512, expansion=4, num_heads=8,
                          pos_encodings="rope", halt_max_steps=16, halt_exploration_prob=0.1))
    assert sum(p.numel() for p in model.parameters()) == 27_275_266


def test_state_dict_key_names():
    keys = set(make_head(pos_encodings="learned").state_dict())
    expected = {"model.inner.embed_tokens.embedding_weight", "model.inner.embed_pos.embedding_weight",
                "model.inner.lm_head.weight", "model.inner.q_head.weight", "model.inner.q_head.bias",
                "model.inner.puzzle_emb.weights", "model.inner.H_init", "model.inner.L_init"}
    for level in ("H", "L"):
        for name in ("self_attn.qkv_proj.weight", "self_attn.o_proj.weight", "mlp.gate_up_proj.weight",
                     "mlp.down_proj.weight"):
            expected.add(f"model.inner.{level}_level.layers.0.{name}")
    assert keys == expected
    # Rope tables are recomputed, not saved.
    assert not any("rotary" in k for k in make_head().state_dict())


def test_compiled_prefix_state_dict_loads(tmp_path):
    assert_compiled_prefix_loads(make_head, tmp_path)


def test_q_head_initialisation():
    inner = make_head().model.inner
    assert torch.count_nonzero(inner.q_head.weight) == 0
    assert torch.all(inner.q_head.bias == -5.0)


def test_eval_runs_exactly_halt_max_steps_segments():
    head = make_head().eval()
    batch = make_batch()
    carry = head.initial_carry(batch)
    segments = 0
    with torch.inference_mode():
        while True:
            carry, _, _, _, all_halted = head(carry=carry, batch=batch, return_keys=())
            segments += 1
            if all_halted:
                break
    assert segments == TINY["halt_max_steps"]
    assert torch.all(carry.steps == TINY["halt_max_steps"])


def test_halted_rows_reset_and_take_new_data(monkeypatch):
    head = make_head()
    model = head.model
    first, second = make_batch(0), make_batch(1)
    carry = head.initial_carry(first)
    carry, *_ = head(carry=carry, batch=first, return_keys=())
    carry.halted = torch.tensor([True, False, True])
    old_z_H = carry.inner_carry["z_H"].clone()

    seen = []
    original_forward = model.inner.forward

    def spy(inner_carry, batch):
        seen.append((inner_carry["z_H"].clone(), inner_carry["z_L"].clone(), {k: v.clone() for k, v in batch.items()}))
        return original_forward(inner_carry, batch)

    monkeypatch.setattr(model.inner, "forward", spy)
    new_carry, *_ = head(carry=carry, batch=second, return_keys=())
    z_H, z_L, data = seen[0]
    for row, reset in enumerate([True, False, True]):
        if reset:
            assert torch.equal(z_H[row], model.inner.H_init.expand_as(z_H[row]))
            assert torch.equal(z_L[row], model.inner.L_init.expand_as(z_L[row]))
            assert torch.equal(data["inputs"][row], second["inputs"][row])
            assert new_carry.steps[row] == 1
        else:
            assert torch.equal(z_H[row], old_z_H[row])
            assert torch.equal(data["inputs"][row], first["inputs"][row])
            assert new_carry.steps[row] == 2
    assert torch.equal(new_carry.current_data["labels"][1], first["labels"][1])


def test_gradient_flows_only_through_last_L_and_H_update():
    head = make_head()
    inner = head.model.inner
    calls = []
    inner.L_level.register_forward_hook(lambda m, i, o: calls.append(("L", torch.is_grad_enabled())))
    inner.H_level.register_forward_hook(lambda m, i, o: calls.append(("H", torch.is_grad_enabled())))
    batch = make_batch()
    carry = head.initial_carry(batch)
    carry, loss, *_ = head(carry=carry, batch=batch, return_keys=())
    # Segment with gradient: L x3 and H x1 without, then L and H with; then the target-Q segment, no grad.
    main_segment = calls[:6]
    assert main_segment == [("L", False), ("L", False), ("H", False), ("L", False), ("L", True), ("H", True)]
    assert not any(grad for _, grad in calls[6:])
    loss.backward()
    assert inner.L_level.layers[0].self_attn.qkv_proj.weight.grad is not None
    assert inner.puzzle_emb.local_weights.grad is not None
    assert not carry.inner_carry["z_H"].requires_grad


def test_training_outputs_and_metrics():
    head = make_head()
    batch = make_batch()
    carry = head.initial_carry(batch)
    carry, loss, metrics, outputs, _ = head(carry=carry, batch=batch, return_keys=("preds", "logits", "missing"))
    assert set(outputs) == {"preds", "logits"}
    assert outputs["logits"].shape == (3, 6, 7)  # the puzzle-embedding prefix is cut off
    assert set(metrics) == {"count", "accuracy", "exact_accuracy", "q_halt_accuracy", "steps", "lm_loss",
                            "q_halt_loss", "q_continue_loss"}
    total = metrics["lm_loss"] + 0.5 * (metrics["q_halt_loss"] + metrics["q_continue_loss"])
    assert loss.item() == pytest.approx(total.item(), rel=1e-12)


def test_exploration_is_reproducible_from_seed():
    def run(seed):
        head = make_head(seed=seed, halt_max_steps=8, halt_exploration_prob=1.0)
        with torch.no_grad():  # make the Q head always vote halt, so only exploration keeps rows going
            head.model.inner.q_head.bias.copy_(torch.tensor([5.0, -5.0]))
        batch = make_batch(batch_size=3)
        carry = head.initial_carry(batch)
        halts = []
        for _ in range(6):
            carry, *_ = head(carry=carry, batch=batch, return_keys=())
            halts.append(carry.halted.clone())
        return torch.stack(halts)

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2)) or not torch.equal(run(1), run(3))
    # With exploration certain, no row halts before its second segment.
    assert not run(4)[0].any()


def test_unknown_arch_key_is_rejected_by_name():
    import pydantic
    with pytest.raises(pydantic.ValidationError, match="hiden_size"):
        ModelCls({**TINY, "hiden_size": 3})
