"""The FID protocol and its files: `python -m evaluation stats / fid` against pytorch-fid's
own computation, every input format, and one-line errors for bad files."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

import evaluation
import feature_nets
from tools import torch_peers


def _run(capsys, *args) -> str:
  """The last line of stdout of `python -m evaluation <args>`."""
  capsys.readouterr()
  evaluation.main(list(args))
  return capsys.readouterr().out.strip().splitlines()[-1]


def _fails_in_one_line(capsys, *args, words=()):
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    evaluation.main(list(args))
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: "), err
  for word in words:
    assert word in err[0], err[0]


def _random_statistics(rng, dim):
  a = rng.normal(size=(dim, dim))
  return rng.normal(size=dim), a @ a.T / dim + 0.1 * np.eye(dim)


def test_to_uint8_rounds_and_clips_as_an_image_file_would():
  x = np.array([-0.1, 0.0, 0.49 / 255, 0.51 / 255, 127.5 / 255 + 1e-6, 254.4 / 255, 1.2])
  np.testing.assert_array_equal(evaluation.to_uint8(x), [0, 0, 0, 1, 128, 254, 255])
  images = np.random.default_rng(0).integers(0, 256, (4, 5, 5, 3)).astype(np.uint8)
  np.testing.assert_array_equal(evaluation.protocol_images(images / 255.0, "uint8") * 255.0,
                                images)


def test_fid_of_two_statistics_files_is_pytorch_fids_formula(tmp_path, capsys):
  fid_score = torch_peers.import_module("pytorch_fid.fid_score")
  rng = np.random.default_rng(0)
  (mu1, sigma1), (mu2, sigma2) = _random_statistics(rng, 16), _random_statistics(rng, 16)
  np.savez(tmp_path / "a.npz", mu=mu1, sigma=sigma1)
  np.savez(tmp_path / "b.npz", mu=mu2, sigma=sigma2)
  want = fid_score.calculate_frechet_distance(mu1, sigma1, mu2, sigma2)
  got = float(_run(capsys, "fid", str(tmp_path / "a.npz"), str(tmp_path / "b.npz")))
  assert want > 1.0
  np.testing.assert_allclose(got, want, rtol=1e-9)


def test_score_sde_activations_give_the_same_statistics(tmp_path, capsys):
  """score_sde's <dataset>_stats.npz holds Inception pool_3 activations [N, 2048]: read as
  their mean and covariance, so their FID to those statistics is zero."""
  pool = np.random.default_rng(1).normal(size=(200, 8)).astype(np.float32)
  np.savez(tmp_path / "score_sde.npz", pool_3=pool)
  mu, sigma = evaluation.feature_statistics(pool)
  np.savez(tmp_path / "stats.npz", mu=mu, sigma=sigma)
  assert abs(float(_run(capsys, "fid", str(tmp_path / "score_sde.npz"),
                        str(tmp_path / "stats.npz")))) < 1e-9
  _run(capsys, "stats", str(tmp_path / "score_sde.npz"), "--out", str(tmp_path / "out.npz"))
  with np.load(tmp_path / "out.npz") as out:
    np.testing.assert_allclose(out["mu"], mu)
    np.testing.assert_allclose(out["sigma"], sigma)


def _write_pngs(folder, images):
  folder.mkdir()
  for i, image in enumerate(images):
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(folder / f"{i:03d}.png")


@pytest.mark.parametrize("channels", [1, 3])
def test_a_folder_of_pngs_reads_as_the_same_images_as_an_adm_file(channels, tmp_path):
  images = np.random.default_rng(3).integers(0, 256, (5, 7, 6, channels)).astype(np.uint8)
  _write_pngs(tmp_path / "pngs", images)
  np.savez(tmp_path / "samples.npz", arr_0=images)
  for path in (tmp_path / "pngs", tmp_path / "samples.npz"):
    kind, read = evaluation.read_images_or_statistics(str(path))
    assert kind == "images"
    np.testing.assert_array_equal(read, images)


@pytest.mark.slow
def test_statistics_of_pngs_equal_pytorch_fids(tmp_path, capsys):
  """~40 s. The same random-weight Inception in both (tools/torch_peers): our statistics
  of a folder of PNGs equal pytorch-fid's calculate_activation_statistics on those files."""
  fid_score = torch_peers.import_module("pytorch_fid.fid_score")
  reference, network = torch_peers.random_pytorch_fid_inception()
  torch.save(network.state_dict(), tmp_path / feature_nets.INCEPTION_FILE)
  feature_nets.main(["convert_inception", "--pth", str(tmp_path / feature_nets.INCEPTION_FILE),
                     "--data_dir", str(tmp_path)])
  images = np.random.default_rng(2).integers(0, 256, (6, 32, 32, 3)).astype(np.uint8)
  folder = tmp_path / "pngs"
  _write_pngs(folder, images)
  files = sorted(str(folder / name) for name in os.listdir(folder))
  want_mu, want_sigma = fid_score.calculate_activation_statistics(
      files, reference, batch_size=3, dims=2048, device="cpu", num_workers=0)
  _run(capsys, "stats", str(folder), "--out", str(tmp_path / "ours.npz"),
       "--data_dir", str(tmp_path))
  with np.load(tmp_path / "ours.npz") as ours:
    scale = np.abs(want_mu).max()
    assert 1e-2 < scale < 1e3, scale
    np.testing.assert_allclose(ours["mu"], want_mu, atol=1e-4 * scale)
    np.testing.assert_allclose(ours["sigma"], want_sigma, atol=1e-4 * np.abs(want_sigma).max())


@pytest.mark.parametrize("arrays, words", [
    ({"mean": np.zeros(3)}, ["keys ['mean']", "expected mu and sigma"]),
    ({"mu": np.zeros(3), "sigma": np.eye(4)}, ["sigma float64[4, 4]", "sigma [D, D]"]),
    ({"arr_0": np.zeros((2, 8, 8, 3), np.float32)}, ["arr_0 float32[2, 8, 8, 3]", "uint8"]),
    ({"arr_0": np.zeros((2, 8, 8, 4), np.uint8)}, ["C 1 or 3"]),
    ({"pool_3": np.zeros((5,), np.float32)}, ["pool_3 float32[5]"]),
])
def test_a_bad_statistics_or_samples_file_is_one_line(arrays, words, tmp_path, capsys):
  np.savez(tmp_path / "bad.npz", **arrays)
  np.savez(tmp_path / "good.npz", mu=np.zeros(3), sigma=np.eye(3))
  _fails_in_one_line(capsys, "fid", str(tmp_path / "bad.npz"), str(tmp_path / "good.npz"),
                     words=[str(tmp_path / "bad.npz"), *words])


def test_unreadable_paths_are_one_line(tmp_path, capsys):
  (tmp_path / "notes.txt").write_text("not an array")
  (tmp_path / "empty").mkdir()
  for path, words in ((tmp_path / "notes.txt", ["neither a folder of PNGs"]),
                      (tmp_path / "empty", ["no .png files"]),
                      (tmp_path / "missing.npz", ["missing.npz"])):
    _fails_in_one_line(capsys, "stats", str(path), "--out", str(tmp_path / "o.npz"),
                       words=words)
