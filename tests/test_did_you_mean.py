"""Did-you-mean: an override Hydra refuses gets the closest existing keys or options, in the CLI's red panel."""

import pytest

from dlrun.cli import parse_overrides
from dlrun.config import CONFIG_DIR
from dlrun.did_you_mean import config_dirs, suggestions

from conftest import run_cli


def suggested(*args: str, dirs=(CONFIG_DIR,)) -> list[str]:
    return suggestions(parse_overrides(list(args)), list(dirs))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["trainer.max_epoch=3"],
            "trainer.max_epoch: no such key; did you mean trainer.max_epochs? type trainer.max_epochs=3",
        ),
        (["optimizer.lrr=1"], "optimizer.lrr: no such key; did you mean optimizer.lr? type optimizer.lr=1"),
        (
            ["callbacks.checkpoint.monitr=x"],
            "callbacks.checkpoint.monitr: no such key; did you mean callbacks.checkpoint.monitor? "
            "type callbacks.checkpoint.monitor=x",
        ),
        (["maxepochs=3"], "maxepochs: no such key; did you mean trainer.max_epochs? type trainer.max_epochs=3"),
        (["trainr.max_epoch=3"], "trainr.max_epoch: no such key; did you mean trainer.max_epochs?"),
        (["modle=cnn"], "modle: no such key; did you mean model? type model=cnn"),
        (["model=resnt"], "model = resnt: no such option; did you mean resnet? type model=resnet"),
        (["trainer=fsat"], "trainer = fsat: no such option; did you mean fast? type trainer=fast"),
        (["scheduler=cosin"], "scheduler = cosin: no such option; did you mean cosine? type scheduler=cosine"),
        (["dataset/transforms=imagnet"], "dataset/transforms = imagnet: no such option; did you mean imagenet?"),
        (["dataset/transfroms=imagenet"], "no such group; did you mean dataset/transforms? type dataset/transforms="),
        (["model=mlp,resnt"], "model = resnt: no such option; did you mean resnet?"),  # a sweep's choices
    ],
)
def test_an_unknown_key_or_option_gets_the_closest(args, expected):
    (line,) = suggested(*args)
    assert expected in line


def test_keys_come_from_the_options_chosen():
    """optimizer=sgd brings momentum: a typo of it is found there, and not under the default adam."""
    assert suggested("optimizer=sgd", "optimizer.momentun=0.9") == [
        "optimizer.momentun: no such key; did you mean optimizer.momentum? type optimizer.momentum=0.9"
    ]
    assert suggested("optimizer.momentun=0.9") == []


def test_a_key_found_in_several_places_lists_them():
    (line,) = suggested("monitor=val/acc")
    assert "callbacks.early_stopping.monitor or callbacks.checkpoint.monitor" in line


def test_every_problem_is_named_and_good_overrides_are_not():
    lines = suggested("model=cnn", "trainer.max_epochs=2", "trainer.devise=cpu", "optimizer=adamm", "+model.depth=3")
    assert [line.split(":")[0] for line in lines] == ["trainer.devise", "optimizer = adamm"]


def test_nothing_close_suggests_nothing():
    assert suggested("zzqqxx=1", "model=qqqqqq") == []


def test_a_users_config_dir_is_searched_too(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "linear.yaml").write_text("_target_: mynets.linear\nwidth: 3\n")
    dirs = config_dirs(["--config-dir", str(tmp_path), "model=linar"], CONFIG_DIR)
    assert dirs == [CONFIG_DIR, tmp_path]
    (line,) = suggested("model=linar", dirs=dirs)
    assert line == "model = linar: no such option; did you mean linear? type model=linear"
    assert suggested("model=linear", "model.widht=4", dirs=dirs) == [
        "model.widht: no such key; did you mean model.width? type model.width=4"
    ]


@pytest.mark.parametrize(
    ("args", "hydra_says", "dlrun_says"),
    [
        (
            ["trainer.max_epoch=3"],
            "Key 'max_epoch' not in 'TrainerConfig'",
            "did you mean trainer.max_epochs? type trainer.max_epochs=3",
        ),
        (["model=resnt"], "Could not find 'model/resnt'", "did you mean resnet? type model=resnet"),
    ],
)
def test_the_cli_prints_hydras_error_then_the_suggestion_and_exits_2(tmp_path, args, hydra_says, dlrun_says):
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    output = " ".join(result.stderr.split())  # undo the panel's line wrapping
    assert hydra_says in output and dlrun_says in output
    assert output.index(hydra_says) < output.index(dlrun_says)
    assert "Traceback" not in output and not (tmp_path / "outputs").exists()
