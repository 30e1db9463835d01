"""One process of tests/test_distributed.py's detection case: python tests/detection_worker.py
WORKDIR. Trains test_detection's tiny CenterNet on a few scenes (jax.distributed joins the
processes, as experiments.train does, when JAX_COORDINATOR_ADDRESS is set) and prints one JSON line:
the data-parallel axis as `parallel.gather` returns it, and the final metrics."""
import json
import os
import sys

sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                os.path.dirname(os.path.abspath(__file__))]

from convjax import parallel  # pylint: disable=wrong-import-position

parallel.maybe_initialize_distributed()

import numpy as np  # pylint: disable=wrong-import-position

from convjax.data import scenes  # pylint: disable=wrong-import-position
from convjax.training import loop  # pylint: disable=wrong-import-position
import test_detection  # pylint: disable=wrong-import-position

scenes.NUM_SCENES = test_detection.FEW_SCENES
dp = parallel.DataParallel()
axis = dp.pmap(lambda x: parallel.device_index() + x, in_axes=parallel.REPLICATED)(
    dp.replicate(np.int32(0)))
result = loop.train_and_evaluate(test_detection.scenes_config(), sys.argv[1])
print(json.dumps({'axis': np.asarray(parallel.gather(axis)).tolist(), 'metrics': result.metrics}))
