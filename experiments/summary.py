"""Layer-by-layer summary of one model, or a size table of many.

  python -m experiments.summary --model=resnet50 [--input_shape=224,224,3] [--num_classes=1000]
  python -m experiments.summary --model='*' --markdown  (the model table of docs/models.md)

--model takes comma-separated fnmatch patterns; with one match it prints every layer (output shape,
parameters, multiply-adds), with several a table of parameters and forward FLOPs per image at each
model's native input (or --input_shape). Nothing is computed: the model is traced abstractly.
"""
from absl import flags

from experiments import cli

_MODEL = flags.DEFINE_string('model', None, 'Registry name(s): comma-separated fnmatch patterns.')
_INPUT_SHAPE = flags.DEFINE_list('input_shape', None, 'height,width,channels; default: native.')
_NUM_CLASSES = flags.DEFINE_integer('num_classes', None, 'Classifier width; default: native.')
_MARKDOWN = flags.DEFINE_bool('markdown', False, 'Print the multi-model table as markdown.')
flags.mark_flags_as_required(['model'])


def main(argv):
  del argv
  from convjax import models
  from convjax.analysis import summary
  names = models.match(_MODEL.value)
  shape = cli.parse_shape(_INPUT_SHAPE.value)
  rows = []
  for name in names:
    input_shape = shape or models.get_spec(name).input_shape
    model = models.create(name, _NUM_CLASSES.value, input_shape=input_shape)
    layers = summary.layers(model, input_shape)
    if len(names) == 1:
      print(f"{name} at {'x'.join(map(str, input_shape))}\n{summary.format_layers(layers)}")
      return
    params, macs = sum(l.params for l in layers), sum(l.multiply_adds for l in layers)
    rows.append([name, 'x'.join(map(str, input_shape)), params, f'{2 * macs / 1e9:.3f}',
                 models.get_spec(name).paper])
  header = ['model', 'input', 'parameters', 'GFLOPs / image', 'follows']
  print(summary.markdown_table(header, rows) if _MARKDOWN.value else
        '\n'.join(f'{r[0]:14s} {r[1]:>10s} {r[2]:>14,d} {r[3]:>10s}  {r[4]}' for r in rows))


if __name__ == '__main__':
  cli.run(main)
