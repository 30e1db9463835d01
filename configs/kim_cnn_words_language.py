"""Word-level language identification: Kim's multi-width convnet over the UTF-8 bytes of single
words from Debian's word lists in 14 languages, against a character n-gram logistic regression
trained in the same command on the same split.

  python -m experiments.train --config=configs/kim_cnn_words_language.py \
      --workdir=workdirs/kim_cnn_words_language

10,000 words of each language, each at most 32 bytes; words found in the lists of several
languages are left out (convjax/data/text.py). Loading reads every list (the Polish one holds
4.3 million forms), which takes about half a minute.

Result: see README.md ("Results") for the accuracy and wall time this config reaches.
"""
from configs import char_cnn_fortunes_language


def get_config():
  config = char_cnn_fortunes_language.get_config()
  config.model = 'kim_cnn'
  config.dataset = 'words_language'
  config.num_epochs = 10.0
  config.warmup_epochs = 0.5
  return config
