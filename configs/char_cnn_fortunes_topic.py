"""Topic classification of English quotes: which of 17 Debian fortune files (computers, law,
politics, zippy, ...) a quote comes from, by Zhang et al.'s character-level convnet, against a
character n-gram logistic regression trained in the same command on the same split.

  python -m experiments.train --config=configs/char_cnn_fortunes_topic.py \
      --workdir=workdirs/char_cnn_fortunes_topic

The categories are the English fortune files with at least 300 distinct quotes (about 11,600 in
all; convjax/data/text.py). --config.model=kim_cnn trains Kim's multi-width net instead.

Result: see README.md ("Results") for the accuracy and wall time this config reaches.
"""
from configs import char_cnn_fortunes_language


def get_config():
  config = char_cnn_fortunes_language.get_config()
  config.dataset = 'fortunes_topic'
  config.batch_size = 64
  config.num_epochs = 10.0
  config.warmup_epochs = 1.0
  config.eval_batch_size = 1185
  return config
