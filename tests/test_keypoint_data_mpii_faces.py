"""MPII and the four face-landmark builders on fake release files, read back through
the real source; one DataError line for a missing image."""
import cv2
import numpy as np
import pytest

from hrnet_jax.data import DataError
from hrnet_jax.data import face_landmarks as fl
from hrnet_jax.data import keypoint_fakes
from hrnet_jax.data import registry
from hrnet_jax.data import sources

FACES = ('wflw', '300w', 'aflw', 'cofw')
REGISTRY_NAME = {'300w': 'face300w'}


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp('mpii_faces')
  manual = str(root / 'manual')
  fakes = {'mpii_pose': keypoint_fakes.write_fake_mpii(manual)}
  for face in FACES:
    fakes[face] = keypoint_fakes.write_fake_faces(manual, face, seed=len(face))
  names = ['mpii_pose'] + [REGISTRY_NAME.get(f, f) for f in FACES]
  sources.build_datasets(names, data_dir=str(root / 'tfds'), manual_dir=manual)
  return root, fakes


def _open(root, name, split):
  return sources.open_split(registry.get_dataset_info(name), split,
                            data_dir=str(root / 'tfds'), manual_dir=str(root / 'manual'))


@pytest.mark.slow
def test_mpii_people_and_gt_valid_rows(built):
  root, fakes = built
  fake = fakes['mpii_pose']
  for split, key in (('train', 'train'), ('validation', 'valid')):
    source = _open(root, 'mpii_pose', split)
    entries = fake[key]
    names = sorted({e['image'] for e in entries})
    assert [source[i]['file_name'].decode() for i in range(len(source))] == names
    seen = 0
    for i in range(len(source)):
      ex = source[i]
      for k, idx in enumerate(ex['index']):
        entry = entries[idx]
        assert entry['image'] == ex['file_name'].decode()
        np.testing.assert_allclose(ex['joints'].reshape(-1, 16, 2)[k], entry['joints'],
                                   rtol=1e-6)
        np.testing.assert_array_equal(ex['joints_vis'].reshape(-1, 16)[k], entry['joints_vis'])
        np.testing.assert_allclose(ex['centers'].reshape(-1, 2)[k], entry['center'], rtol=1e-6)
        assert ex['scales'][k] == pytest.approx(entry['scale'], rel=1e-6)
        if split == 'validation':
          gt = fake['gt_valid']
          np.testing.assert_allclose(ex['gt'].reshape(-1, 16, 2)[k],
                                     gt['pos_gt_src'][:, :, idx], rtol=1e-6)
          np.testing.assert_allclose(ex['headboxes'].reshape(-1, 2, 2)[k],
                                     gt['headboxes_src'][:, :, idx], rtol=1e-6)
          np.testing.assert_array_equal(ex['missing'].reshape(-1, 16)[k],
                                        gt['jnt_missing'][:, idx])
        seen += 1
    assert seen == len(entries)
    assert sum(source.dataset_info.metadata[split]['num_people']) == len(entries)


@pytest.mark.parametrize('face', ['wflw', '300w', 'aflw'])
def test_csv_faces(built, face):
  root, fakes = built
  main_test = fl._CSV_SPLITS[face][1]  # pylint: disable=protected-access
  for split, key in (('train', 'train'), ('validation', main_test)):
    source = _open(root, REGISTRY_NAME.get(face, face), split)
    rows = fakes[face][key]
    assert len(source) == len(rows)
    for i, (rel, values) in enumerate(rows):
      ex = source[i]
      assert ex['file_name'].decode() == rel
      first = 3 if face == 'aflw' else 2
      assert ex['scale'] == pytest.approx(values[0], rel=1e-6)
      assert ex['box_size'] == pytest.approx(values[1] if face == 'aflw' else 0.0, rel=1e-6)
      np.testing.assert_allclose(ex['center'], values[first - 1:first + 1], rtol=1e-6)
      np.testing.assert_allclose(ex['landmarks'].reshape(-1), values[first + 1:], rtol=1e-6)
      assert cv2.imdecode(np.frombuffer(ex['image'], np.uint8), cv2.IMREAD_COLOR) is not None


def test_cofw_images_points_and_official_box(built):
  root, fakes = built
  for split, key in (('train', 'train'), ('validation', 'test')):
    source = _open(root, 'cofw', split)
    fake = fakes['cofw'][key]
    for i in range(len(source)):
      ex = source[i]
      image = cv2.cvtColor(cv2.imdecode(np.frombuffer(ex['image'], np.uint8),
                                        cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
      ref = fake['images'][i]
      ref = np.repeat(ref[..., None], 3, 2) if ref.ndim == 2 else ref
      np.testing.assert_array_equal(image, ref)          # PNG: lossless
      pts = fake['phis'][i][0:58].reshape(2, -1).transpose()
      np.testing.assert_allclose(ex['landmarks'], pts, rtol=1e-6)
      xmin, xmax, ymin, ymax = pts[:, 0].min(), pts[:, 0].max(), pts[:, 1].min(), pts[:, 1].max()
      np.testing.assert_allclose(ex['center'], [(np.floor(xmin) + np.ceil(xmax)) / 2,
                                                (np.floor(ymin) + np.ceil(ymax)) / 2])
      assert ex['scale'] == pytest.approx(
          max(np.ceil(xmax) - np.floor(xmin), np.ceil(ymax) - np.floor(ymin)) / 200)


@pytest.mark.slow
def test_mpii_image_missing_from_the_tarball(tmp_path):
  keypoint_fakes.write_fake_mpii(str(tmp_path / 'manual'), missing_image=True)
  with pytest.raises(DataError) as err:
    sources.build_datasets(['mpii_pose'], data_dir=str(tmp_path / 'tfds'),
                           manual_dir=str(tmp_path / 'manual'))
  text = str(err.value)
  assert '\n' not in text
  assert 'valid.json image valid_0001.jpg: not in' in text and 'mpii_human_pose_v1.tar.gz' in text


def test_cofw_v73_hdf5_file(tmp_path):
  """MATLAB v7.3 files are HDF5 with every array transposed and images as references."""
  import h5py
  rng = np.random.default_rng(0)
  images = [rng.integers(0, 256, (30, 40, 3), dtype=np.uint8),
            rng.integers(0, 256, (25, 35), dtype=np.uint8)]
  phis = rng.uniform(0, 30, (2, 87))
  path = tmp_path / 'COFW_test_color.mat'
  with h5py.File(path, 'w') as f:
    refs = []
    for i, image in enumerate(images):
      refs.append(f.create_dataset(f'#refs#/{i}', data=image.T).ref)
    f.create_dataset('IsT', data=np.array(refs, dtype=h5py.ref_dtype).reshape(1, -1))
    f.create_dataset('phisT', data=phis.T)
  got_images, got_phis = fl.load_cofw(str(path), 'IsT', 'phisT')
  for got, ref in zip(got_images, images):
    np.testing.assert_array_equal(got, ref)
  np.testing.assert_array_equal(got_phis, phis)
  with pytest.raises(DataError, match="cannot read IsTr/phisTr"):
    fl.load_cofw(str(path), 'IsTr', 'phisTr')
