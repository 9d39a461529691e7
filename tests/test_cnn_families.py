"""torchvision's CNN families: every variant trains a step on 1x8x8, 1x28x28 and 3x32x32 images through the real
config (auxiliary losses included); pretrained weights from a temporary torch hub cache; the errors users meet."""

import copy
import functools
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dlrun import build
from dlrun.config import CONFIG_DIR
from dlrun.data.module import DataModule
from dlrun.data.spec import DataSpec
from dlrun.data.transforms import image_transforms, resized_shape
from dlrun.errors import ConfigError
from dlrun.models import pretrained as imagenet
from dlrun.models.vision import FAMILIES

from conftest import compose_config, model_for, option_names, run_cli

SHAPES = {"digits": [1, 8, 8], "mnist": [1, 28, 28], "cifar10": [3, 32, 32]}  # dataset option -> image shape
HEAVY = re.compile(r"vgg|inception|resnet(50|101|152)|densenet(161|169|201)|efficientnet_b[4-7]")
VARIANTS = [
    pytest.param(family.name, variant, marks=[pytest.mark.slow] if HEAVY.match(variant) else [])
    for family in FAMILIES.values()
    for variant in family.variants
]


@functools.cache
def composed(option: str, dataset: str, *overrides: str):
    return compose_config(f"model={option}", f"dataset={dataset}", "optimizer=sgd", "optimizer.lr=0.001", *overrides)


def config(option: str, dataset: str, *overrides: str, **model_keys):
    cfg = copy.deepcopy(composed(option, dataset, *overrides))
    for key, value in model_keys.items():
        cfg.model[key] = value
    return cfg


def tiny_data(cfg, count: int = 2) -> DataModule:
    """count random images of the dataset's shape (of each split), with the dataset's configured transforms."""
    shape = list(cfg.dataset.in_shape)
    generator = torch.Generator().manual_seed(0)
    split = (torch.randn(count, *shape, generator=generator), torch.arange(count) % cfg.dataset.num_classes)
    transforms = OmegaConf.to_container(cfg.dataset.transforms, resolve=True)
    train_transform, eval_transform = image_transforms(transforms, in_shape=shape, mean=None, std=None)
    spec = DataSpec(in_shape=resized_shape(shape, transforms.get("resize")), class_names=["a", "b"])
    return DataModule(
        split, split, split, spec, batch_size=count, train_transform=train_transform, eval_transform=eval_transform
    )


def train_one_step(cfg, network: torch.nn.Module | None = None) -> tuple[torch.nn.Module, dict]:
    """One optimizer step of the configured task (on the given network, else the configured one) on two images;
    returns the network and the step's outputs."""
    network = model_for(cfg) if network is None else network
    data = tiny_data(cfg)
    task = build.task(cfg, network, data)
    optimizer = task.configure_optimizers(build.optimizer_factory(cfg))["model"]
    before = [p.detach().clone() for p in network.parameters() if p.requires_grad]
    network.train()
    step = task.training_step(next(data.batches("train")))
    step["loss"].backward()
    optimizer.step()
    assert torch.isfinite(step["loss"]), step
    after = [p for p in network.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True)), "the step changed no weight"
    network.eval()
    with torch.no_grad():
        evaluation = task.evaluation_step(next(data.batches("test")))
    assert evaluation["output"].shape == (2, cfg.dataset.num_classes)
    return network, step


# -- every family, every variant ----------------------------------------------------------------------


def test_every_family_is_a_model_option_listing_its_variants():
    assert set(FAMILIES) <= set(option_names("model"))
    for name, family in FAMILIES.items():
        text = (CONFIG_DIR / "model" / f"{name}.yaml").read_text()
        listed = re.search(r"^variant: (\w+)\s+# (.+)$", text, re.MULTILINE)
        assert listed, name
        assert listed.group(2).split(" | ") == list(family.variants), name
        assert listed.group(1) in family.variants
        assert "Small images" in text or "resized" in text  # the YAML says how small images are handled


@pytest.mark.parametrize(("option", "variant"), VARIANTS)
def test_every_variant_trains_a_step_on_small_grey_and_colour_images(option, variant):
    grey = model_for(config(option, "digits", variant=variant))
    for dataset in SHAPES:
        cfg = config(option, dataset, variant=variant)
        # 8x8 and 28x28 grey images get the same network (one channel, small stem): it is built once, to save time,
        # and each step starts from its initial weights.
        network, step = train_one_step(cfg, copy.deepcopy(grey) if SHAPES[dataset][0] == 1 else None)
        stem = next(m for m in network.modules() if isinstance(m, torch.nn.Conv2d))
        assert stem.in_channels == SHAPES[dataset][0]
        if option == "inception":  # resized to input_size (299) in the transforms, not in the model
            assert cfg.dataset.transforms.resize == 299
        else:
            assert cfg.dataset.transforms.resize is None and stem.stride == (1, 1)  # the small-input stem


@pytest.mark.parametrize("option", ["googlenet", "inception"])
def test_auxiliary_classifiers_count_in_the_training_loss(option):
    cfg = config(option, "digits")
    torch.manual_seed(0)
    network = model_for(cfg)
    data = tiny_data(cfg)
    inputs, targets = next(data.batches("train"))
    network.train()
    outputs = network(inputs)
    assert isinstance(outputs, tuple) and len(outputs) == {"googlenet": 3, "inception": 2}[option]
    task = build.task(cfg, network, data)
    criterion = torch.nn.CrossEntropyLoss()
    main, *auxiliary = outputs
    expected = criterion(main, targets) + 0.3 * sum(criterion(aux, targets) for aux in auxiliary)
    network.forward = lambda _: outputs  # the same outputs again: no new dropout draw
    torch.testing.assert_close(task.training_step((inputs, targets))["loss"], expected)

    smaller = {"input_size": 75} if option == "inception" else {}  # without aux_logits, 75 px suffice
    without = config(option, "digits", aux_logits=False, **smaller)
    network = model_for(without)
    assert not isinstance(network.train()(next(tiny_data(without).batches("train"))[0]), tuple)


def test_large_images_keep_the_imagenet_stem():
    cfg = config("efficientnet", "cifar10", "dataset.in_shape=[1,96,96]")
    network = model_for(cfg)
    assert network.features[0][0].stride == (2, 2) and network.features[0][0].in_channels == 1
    assert network(torch.randn(2, 1, 96, 96)).shape == (2, 10)


def test_a_resize_transform_reaches_the_model():
    cfg = config("resnet", "digits", "dataset.transforms.resize=[64,64]")
    network, _ = train_one_step(cfg)
    assert network.conv1.stride == (2, 2)  # 64 px: ImageNet's stem, not the small one


# -- pretrained weights from the torch hub cache ------------------------------------------------------


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache of this test's own; downloads fail as on a machine without a network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, *args, **kwargs):
        raise OSError(f"no network: {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch" / "hub" / "checkpoints"


def save_imagenet_weights(variant: str, **options) -> dict[str, torch.Tensor]:
    """A randomly initialised ImageNet model of the variant, saved in the cache under the published file name."""
    from torchvision import models

    torch.manual_seed(1)
    network = models.get_model(variant, weights=None, num_classes=1000, **options)
    state = {key: value.clone() for key, value in network.state_dict().items()}
    path = imagenet.cached_file(imagenet.default_weights(variant))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def test_pretrained_loads_the_cached_weights_and_replaces_the_head(hub):
    state = save_imagenet_weights("mobilenet_v3_small")
    assert (hub / "mobilenet_v3_small-047dcff4.pth").is_file()
    cfg = config("mobilenet", "cifar10", variant="mobilenet_v3_small", pretrained=True)
    network = model_for(cfg)

    loaded = network.state_dict()
    assert loaded["classifier.3.weight"].shape == (10, 1024)  # the new head, for CIFAR's 10 classes
    for key, value in state.items():
        if not key.startswith("classifier.3."):
            assert torch.equal(loaded[key], value), key
    assert network.features[0][0].stride == (2, 2)  # the pretrained stem is kept
    assert all(p.requires_grad for p in network.parameters())  # without freeze_backbone everything trains


def test_freeze_backbone_trains_only_the_new_head(hub):
    save_imagenet_weights("resnet18")
    cfg = config("resnet", "digits", "dataset.transforms.resize=32", pretrained=True, freeze_backbone=True)
    network = model_for(cfg)
    assert network.conv1.in_channels == 1 and network.conv1.stride == (2, 2)  # the RGB kernels, averaged for grey
    assert {name for name, p in network.named_parameters() if p.requires_grad} == {"fc.weight", "fc.bias"}

    before = {key: value.clone() for key, value in network.state_dict().items()}
    data = tiny_data(cfg)
    task = build.task(cfg, network, data)
    optimizer = task.configure_optimizers(build.optimizer_factory(cfg))["model"]
    assert sum(len(group["params"]) for group in optimizer.param_groups) == 2
    network.train()
    task.training_step(next(data.batches("train")))["loss"].backward()
    optimizer.step()
    after = network.state_dict()
    for key, value in after.items():  # weights and batch norm statistics alike
        if not key.startswith("fc."):
            assert torch.equal(value, before[key]), key
    assert not torch.equal(after["fc.weight"], before["fc.weight"])


def test_pretrained_googlenet_keeps_its_auxiliary_heads_for_the_new_classes(hub):
    save_imagenet_weights("googlenet", aux_logits=True, init_weights=False)
    cfg = config("googlenet", "cifar10", pretrained=True)
    network, step = train_one_step(cfg)
    assert network.transform_input  # the ported weights' input scaling, for RGB images
    assert network.fc.out_features == network.aux1.fc2.out_features == network.aux2.fc2.out_features == 10


def test_missing_weights_name_the_cache_directory_and_the_file(hub):
    cfg = config("efficientnet", "cifar10", pretrained=True)
    with pytest.raises(ConfigError) as raised:
        model_for(cfg)
    message = str(raised.value)
    assert str(hub) in message and "efficientnet_b0_rwightman-7f5810bc.pth" in message
    assert "model.download=true" in message

    with pytest.raises(ConfigError, match="model.download = true: fetching .* failed .* no network"):
        model_for(config("efficientnet", "cifar10", pretrained=True, download=True))


def test_a_damaged_cached_file_is_a_config_error(hub):
    hub.mkdir(parents=True)
    (hub / "resnet18-f37072fd.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="resnet18-f37072fd.pth is not a readable weights file"):
        model_for(config("resnet", "cifar10", pretrained=True))


def test_cli_without_cached_weights_exits_2_naming_the_cache(tmp_path):
    torch_home = tmp_path / "torch"
    result = run_cli(
        "model=resnet",
        "model.pretrained=true",
        "trainer.device=cpu",
        cwd=tmp_path,
        env={"TORCH_HOME": str(torch_home)},
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    flat = " ".join(result.stderr.replace("│", " ").split())  # the panel wraps long lines
    assert "resnet18-f37072fd.pth" in flat and "checkpoints" in flat


# -- bad input ----------------------------------------------------------------------------------------


def test_unknown_variant_lists_the_family_s_variants():
    with pytest.raises(ConfigError, match="model.variant = vgg12: not a vgg variant; type one of vgg11 | vgg11_bn"):
        model_for(config("vgg", "digits", variant="vgg12"))


def test_freeze_backbone_without_pretrained_weights_is_a_config_error():
    with pytest.raises(ConfigError, match="model.freeze_backbone = true: there is no pretrained backbone"):
        model_for(config("densenet", "digits", freeze_backbone=True))


def test_images_too_small_for_the_kept_stem_name_the_resize(hub):
    save_imagenet_weights("alexnet")
    with pytest.raises(ConfigError, match=r"needs at least 63x63; type dataset.transforms.resize=224"):
        model_for(config("alexnet", "digits", pretrained=True))
    with pytest.raises(
        ConfigError, match="needs at least 63x63; type dataset.transforms.resize=63 or model.small_input_stem=auto"
    ):
        model_for(config("alexnet", "digits", small_input_stem=False))
    with pytest.raises(ConfigError, match="auxiliary classifier .* needs at least 299x299"):
        model_for(config("inception", "digits", "dataset.transforms.resize=128"))
