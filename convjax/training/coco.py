"""COCO's detection metrics, computed by pycocotools itself, so that AP means what the field means:
AP (IoU 0.50:0.95), AP50, AP75 and AP by object size, each over 101 recall points, up to 100
detections per image."""
import contextlib
import io

import numpy as np

# COCOeval.stats' first six entries, in order.
METRICS = ('AP', 'AP50', 'AP75', 'AP_small', 'AP_medium', 'AP_large')


def detections_json(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                    image_ids=None, score_threshold: float = 0.0) -> list[dict]:
  """Detections in COCO's results format: boxes [n, k, 4] (x, y, w, h), scores [n, k] and
  classes [n, k] (0-based; COCO category = class + 1) of images with ids image_ids (1..n when
  None), keeping scores >= score_threshold."""
  image_ids = range(1, len(boxes) + 1) if image_ids is None else image_ids
  return [{'image_id': int(image_id), 'category_id': int(c) + 1,
           'bbox': [round(float(v), 3) for v in box], 'score': round(float(s), 5)}
          for image_id, image_boxes, image_scores, image_classes
          in zip(image_ids, boxes, scores, classes)
          for box, s, c in zip(image_boxes, image_scores, image_classes) if s >= score_threshold]


def evaluate(ground_truth: dict, detections: list[dict]) -> dict[str, float]:
  """{'AP', 'AP50', 'AP75', 'AP_small', 'AP_medium', 'AP_large'} of detections (COCO results
  format) against ground_truth (COCO's JSON as a dict), by pycocotools' COCOeval. A metric with
  no ground truth to score (no large objects, say) is NaN rather than COCO's -1."""
  from pycocotools import coco, cocoeval  # Imported here: only detection needs it.
  if not detections:  # pycocotools refuses an empty list; nothing found scores 0.
    return {name: 0.0 for name in METRICS}
  with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes.
    truth = coco.COCO()
    truth.dataset = {'info': {}, **ground_truth}
    truth.createIndex()
    evaluator = cocoeval.COCOeval(truth, truth.loadRes(detections), 'bbox')
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
  return {name: float(value) if value >= 0 else float('nan')
          for name, value in zip(METRICS, evaluator.stats)}
