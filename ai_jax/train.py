r"""Fine-tune the student on a selected training set (pure-functional optax loop).

  python -m ai_jax.train --config configs/train.py:smoke --workdir DIR \
      --config.data.path=RUN/selection/best_length_words/train.jsonl

Writes DIR/checkpoints/ (orbax: state, data position, compatibility record; the last
`checkpoint.keep`), DIR/train_metrics.jsonl, DIR/loss.png, DIR/train_summary.json and
DIR/export/hf (safetensors + config.json + tokenizer; load it with
`ai_jax.load_model(DIR/export/hf)` or transformers); the names come from
ai_jax.run.layout.TrainDir. Rerunning resumes from the newest checkpoint, with the same
data order; a checkpoint from another config is refused. A command line only: the stage
is ai_jax.training.trainer.run.
"""

if __name__ == "__main__":
  from ai_jax import cli
  from ai_jax.training import trainer
  cli.run_stage(trainer.run, "--config configs/train.py:smoke --workdir /tmp/train "
                "--config.data.path=RUN/selection/ARM/train.jsonl",
                help_config="Training config file.")
