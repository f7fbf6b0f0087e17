"""The README's code examples run as written (blocks marked `<!-- readme-test -->`)."""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / 'README.md'
BLOCKS = re.findall(r'<!-- readme-test -->\s*```python\n(.*?)```', README.read_text(), re.S)


def test_readme_has_runnable_examples():
  assert len(BLOCKS) >= 2


def test_readme_opens_with_the_two_setup_commands():
  text = README.read_text()
  first_block = re.search(r'```\n(.*?)```', text, re.S).group(1).strip().splitlines()
  assert first_block == [
      'pip install -r requirements.txt && python train.py --config=configs/quickstart.py '
      '--workdir=/tmp/hrnet-quickstart',
      'pip install -r requirements-dev.txt && pytest',
  ]


@pytest.mark.slow
@pytest.mark.parametrize('index', range(len(BLOCKS)))
def test_readme_example_runs(index):
  exec(compile(BLOCKS[index], f'README example {index}', 'exec'), {})
