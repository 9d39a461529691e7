"""What a run prints: the config as a tree, the model's size, and the final results table."""

from rich.console import Console
from rich.table import Table
from rich.tree import Tree


def config_tree(config: dict, label: str = "config") -> Tree:
    tree = Tree(f"[bold]{label}[/]")
    for key, value in config.items():
        if isinstance(value, dict):
            tree.add(config_tree(value, label=key))
        else:
            tree.add(f"{key}: [cyan]{value}[/]")
    return tree


def parameter_count(console: Console, model) -> None:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    console.print(f"model: [bold]{type(model).__name__}[/] with {total:,} parameters ({trainable:,} trainable)")


def results_table(metrics: dict[str, float], baselines: dict[str, dict[str, float]] | None = None) -> Table:
    """The network's metrics, with a column per baseline (dlrun/baselines.py) beside its test metrics."""
    baselines = baselines or {}
    table = Table(title="results")
    table.add_column("metric (best checkpoint)")
    table.add_column("value", justify="right")
    for name in baselines:
        table.add_column(name, justify="right")
    for name, value in metrics.items():
        beside = (baseline.get(name) for baseline in baselines.values())
        table.add_row(name, f"{value:.4f}", *("" if other is None else f"{other:.4f}" for other in beside))
    return table
