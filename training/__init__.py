"""The training library behind pretrain.py, evaluate.py and the tools: what building, training, evaluating and
checkpointing a run takes, in small named steps.

    config.py        the run schema (strict pydantic), the test-time block, the checks across fields
    build.py         create_dataloader, create_model, create_optimizers, create_evaluators, create_task_codec,
                     create_test_time, init_train_state / new_train_state
    state.py         the run's state as components: model, optimizers, schedule, carry, pending metrics, generators
    loop.py          train_batch and the train / evaluate / checkpoint loop
    inference.py     run_to_halt: one batch through every ACT segment
    evaluation.py    evaluate: run every test batch to its end, reduce metrics, feed evaluators, save outputs
    test_time.py     test-time compute: augmentations, trajectories, more segments, the selected answer
    checkpoint_files.py, checkpointing.py   checkpoint files; save_train_state / restore_train_state (exact resume)
    run_config.py    the run's config: validated on rank 0 and named, or rebuilt from a checkpoint's folder
    restore.py       load_trained: a run ready to answer, from a checkpoint
    adaptation.py, task_split.py   test-time training on new tasks (tools/adapt.py), the datasets it cuts
    distributed.py   ranks and devices (torchrun), on_rank_zero, collectives: gradient sum, metric sums
    preemption.py, ema.py, schedule.py, run_logger.py, errors.py   stopping on signals, the weights' moving
                     average, the learning-rate schedule, metrics.jsonl and W&B, one-line errors

Library modules never import the entry scripts; the entry scripts only call these.
"""
