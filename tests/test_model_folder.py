"""Models given as paths: the folder loader, and compare/check taking a folder or a snapshot file."""

import pytest
from model_folders import break_block, save_model_folder
from tiny_models import random_token_ids, tiny_llama

import pytest_hemorrhage as ph
from pytest_hemorrhage.errors import InvalidArgument
from pytest_hemorrhage.model_folder import load_model
from pytest_hemorrhage.probes import Probes, tokenizer_for
from pytest_hemorrhage.snapshot import load_snapshot, record_snapshot


def figures(report):
    """Every metric's estimate, interval and verdict."""
    return {name: (m.estimate, m.ci_low, m.ci_high, m.verdict) for name, m in report.metrics.items()}


@pytest.fixture(scope="module")
def models():
    base = tiny_llama()
    return base, break_block(base, 1, scale=0.5)


@pytest.fixture(scope="module")
def folders(models, tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    return {name: save_model_folder(model, root / name) for name, model in zip(("base", "cand"), models)}


def test_load_model_gives_an_eval_model_equal_to_the_saved_one_with_its_tokenizer(models, folders):
    model, tokenizer = load_model(folders["base"])
    assert not model.training
    ids = random_token_ids(2, 8)
    assert model(ids).logits.allclose(models[0].eval()(ids).logits)
    assert tokenizer_for(model) is tokenizer
    assert tokenizer("the").input_ids  # a working tokenizer, the one saved in the folder


def test_compare_with_paths_equals_compare_with_the_loaded_models(folders):
    probes = random_token_ids(8, 16)
    by_path = ph.compare(folders["base"], folders["cand"], probes)
    by_model = ph.compare(load_model(folders["base"])[0], load_model(folders["cand"])[0], probes)
    assert figures(by_path) == figures(by_model)
    assert by_path.metrics["kl"].estimate > 0  # the candidate differs: the figures are not trivially equal


def test_probes_none_uses_the_folders_tokenizer(folders):
    model, tokenizer = load_model(folders["base"])
    got = ph.compare(model, folders["cand"])
    assert figures(got) == figures(ph.compare(model, folders["cand"], Probes.builtin(tokenizer)))


def test_a_snapshot_file_path_is_a_baseline(models, folders, tmp_path):
    probes = random_token_ids(8, 16)
    path = tmp_path / "base.safetensors"
    record_snapshot(models[0], probes, path)
    from_file = ph.compare(str(path), folders["cand"])
    assert figures(from_file) == figures(ph.compare(load_snapshot(path), models[1]))


def test_a_missing_path_says_it_does_not_exist(tmp_path):
    with pytest.raises(InvalidArgument, match=r"baseline: .*nowhere does not exist; give the folder model.save_pretrained"):
        ph.compare(str(tmp_path / "nowhere"), tiny_llama(), random_token_ids(2, 8))


def test_a_folder_without_config_json_says_so(tmp_path):
    with pytest.raises(InvalidArgument, match=r"candidate: .* \(no config.json\); save one with model.save_pretrained"):
        ph.compare(tiny_llama(), tmp_path, random_token_ids(2, 8))


def test_a_file_as_candidate_is_refused(models, tmp_path):
    path = tmp_path / "base.safetensors"
    record_snapshot(models[0], random_token_ids(2, 8), path)
    with pytest.raises(InvalidArgument, match=r"candidate: .* is a file; expected a Hugging Face model folder"):
        ph.compare(models[0], str(path), random_token_ids(2, 8))


def test_a_folder_without_tokenizer_loads_and_probes_none_says_why(models, tmp_path):
    models[0].save_pretrained(tmp_path)
    model, tokenizer = load_model(tmp_path)
    assert tokenizer is None and not model.training
    with pytest.raises(InvalidArgument, match=r"no tokenizer is known for the baseline \(.* holds no tokenizer; save it "
                                              r"there with tokenizer.save_pretrained\(folder\)\); pass probes="):
        ph.compare(str(tmp_path), models[1])


def test_assert_no_hemorrhage_takes_paths(folders):
    report = ph.assert_no_hemorrhage(folders["base"], folders["base"], random_token_ids(4, 12))
    assert report.passed and report.metrics["kl"].estimate == 0



def test_a_failing_check_on_the_folders_tokenizer_gives_mitigations_its_probes(folders):
    """probes=None with a loaded folder: a mitigation works on copies of the models, which have no
    tokenizer, so it must be handed the probes the check resolved (it used to be handed None)."""
    import copy

    from pytest_hemorrhage.mitigate import Applies, Mitigation, SimpleMitigator
    from pytest_hemorrhage.mitigate.registry import MITIGATIONS

    seen = []

    def restore(baseline, candidate, calibration, thresholds, *, probes=None, **options):
        seen.append((calibration, probes))
        return Mitigation("restore", copy.deepcopy(baseline), "restored the baseline's weights")

    model, tokenizer = load_model(folders["base"])
    registered = dict(MITIGATIONS)
    MITIGATIONS.clear()
    MITIGATIONS["restore"] = SimpleMitigator("restore", lambda b, c: Applies.yes(), restore)
    try:
        with pytest.raises(ph.HemorrhageDetected) as failed:
            ph.assert_no_hemorrhage(model, break_block(model, 1, scale=30.0))
    finally:
        MITIGATIONS.clear()
        MITIGATIONS.update(registered)
    (calibration, probes), = seen
    expected = Probes.builtin(tokenizer)
    assert isinstance(probes, Probes) and probes.token_ids == expected.token_ids
    assert isinstance(calibration, Probes)
    assert failed.value.report.suggestion.startswith("verified fix: restore")
