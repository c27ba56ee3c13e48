"""`smoe data ...`: fetch, list and inspect corpora."""

from __future__ import annotations

import argparse
import sys

from smoe.data.corpus import DEFAULT_VAL_FRACTION, load_corpus
from smoe.data.fetch import REGISTRY, corpus_dir, fetch, get_source, is_fetched


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="fetch, list and inspect text corpora")
    commands = data.add_subparsers(dest="data_command", required=True)

    fetch_parser = commands.add_parser("fetch", help="download a known corpus into the cache")
    fetch_parser.add_argument("name", help="corpus name (see `smoe data list`)")
    fetch_parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    _add_cache(fetch_parser)
    fetch_parser.set_defaults(func=_fetch)

    list_parser = commands.add_parser("list", help="known corpora and whether they are fetched")
    _add_cache(list_parser)
    list_parser.set_defaults(func=_list)

    info_parser = commands.add_parser("info", help="documents and bytes in each split of a corpus")
    info_parser.add_argument("source", metavar="PATH_OR_NAME", help="corpus name, text file or folder")
    info_parser.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                             help=f"share of documents held out for validation (default {DEFAULT_VAL_FRACTION})")
    _add_cache(info_parser)
    info_parser.set_defaults(func=_info)


def _add_cache(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="cache directory (default: $SMOE_CACHE, else ~/.cache/smoe)")


def _fetch(args: argparse.Namespace) -> int:
    source = get_source(args.name)
    def log(message: str) -> None:
        if not args.quiet:
            print(f"{source.name}: {message}", file=sys.stderr)

    path = fetch(source.name, args.cache, log=log)
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    print(path)
    print(f"{len(files)} documents, {sum(p.stat().st_size for p in files):,} bytes")
    print(source.credit)
    return 0


def _list(args: argparse.Namespace) -> int:
    for name, source in sorted(REGISTRY.items()):
        state = f"fetched: {corpus_dir(name, args.cache)}" if is_fetched(name, args.cache) else "not fetched"
        print(f"{name:12s} {source.tool} {source.package:36s} {state}")
    return 0


def _info(args: argparse.Namespace) -> int:
    corpus = load_corpus(args.source, args.val_fraction, args.cache)
    print(f"corpus {corpus.name}")
    print(f"train: {len(corpus.train_docs)} documents, {corpus.train.size:,} bytes")
    print(f"val:   {len(corpus.val_docs)} documents, {corpus.val.size:,} bytes")
    return 0
