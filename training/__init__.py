"""The training library behind pretrain.py, evaluate.py and the tools: what building, training, evaluating and
checkpointing a run takes, in small named steps.

    distributed.py   ranks and devices (torchrun), collectives: gradient sum, metric sums, gathers
    build.py         create_dataloader, create_model, create_optimizers, create_evaluators, init_train_state
    loop.py          train_batch and the train / evaluate / checkpoint loop
    evaluation.py    evaluate: run every test batch to its end, reduce metrics, feed evaluators, save outputs
    checkpointing.py save_train_state / restore_train_state (exact resume)
    run_config.py    the run's config: validated on rank 0 and named, or rebuilt from a checkpoint's folder
    errors.py        the errors reported to the user as one line (exit code 2)

Library modules never import the entry scripts; the entry scripts only call these.
"""
