"""The requirement files and the package metadata say the same thing."""
import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _name(spec: str) -> str:
  return re.split(r'[<>=!~\[; ]', spec.strip(), maxsplit=1)[0].lower().replace('_', '-')


def _requirement_names(path: pathlib.Path) -> set[str]:
  names = set()
  for line in path.read_text().splitlines():
    line = line.split('#', 1)[0].strip()
    if line and not line.startswith('-'):
      names.add(_name(line))
  return names


def test_requirements_txt_pins_exactly_the_library_and_its_train_extra():
  project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
  declared = {_name(s) for s in project['dependencies']}
  declared |= {_name(s) for s in project['optional-dependencies']['train']}
  pinned = _requirement_names(ROOT / 'requirements.txt')
  # jaxlib comes with jax; pinning it keeps the pair in step.
  assert pinned - {'jaxlib'} == declared, (
      f'only in requirements.txt: {sorted(pinned - declared - {"jaxlib"})}; '
      f'only in pyproject.toml: {sorted(declared - pinned)}')


def test_requirements_txt_installs_the_package_and_dev_file_builds_on_it():
  lines = [l.strip() for l in (ROOT / 'requirements.txt').read_text().splitlines()]
  assert '-e .' in lines
  dev = (ROOT / 'requirements-dev.txt').read_text().splitlines()
  assert '-r requirements.txt' in dev


def test_orbax_is_imported_by_one_module_only():
  """The design rule: checkpoint format and policy live in hrnet_jax/checkpointing/store.py."""
  importers = sorted(
      str(p.relative_to(ROOT)) for p in (ROOT / 'hrnet_jax').rglob('*.py')
      if re.search(r'^\s*(import orbax|from orbax)', p.read_text(), re.MULTILINE))
  assert importers == ['hrnet_jax/checkpointing/store.py']
