"""Language identification of quotes: Zhang et al.'s character-level convnet (small, halved) over
the UTF-8 bytes of Debian's fortunes in 12 languages, against a character n-gram logistic
regression trained in the same command on the same split (config.baseline).

  python -m experiments.train --config=configs/char_cnn_fortunes_language.py \
      --workdir=workdirs/char_cnn_fortunes_language

The quotes (about 99,000) come from Debian's fortunes packages, which .ci/setup installs
(convjax/data/text.py); each is cut to its first 256 bytes. --config.dataset=fortunes_topic
classifies English quotes by their fortune file instead; --config.model=kim_cnn trains Kim's
multi-width net.

Result: see README.md ("Results") for the accuracy and wall time this config reaches.
"""
from configs import default


def get_config():
  config = default.get_config()
  config.model = 'char_cnn'
  config.dataset = 'fortunes_language'
  config.baseline = 'char_ngram'
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.num_epochs = 3.0
  config.optimizer = 'adamw'
  config.learning_rate = 2e-3
  config.weight_decay = 0.01
  config.lr_schedule = 'cosine'
  config.warmup_epochs = 0.2
  config.num_devices = 1
  return config
