"""Placeholder until the benchmark module lands."""

import typer

app = typer.Typer(help="Benchmarks.")
