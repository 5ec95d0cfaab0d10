"""``bids-synth models list|show|verify|install``: inspect and install model bundles (no torch)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bids_synth.argtypes import OneLineErrorParser
from bids_synth.cli import guarded, setup_logging
from bids_synth.errors import ModelBundleError


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="bids-synth models",
        description="Model bundles are looked up in $BIDS_SYNTH_HOME/models (default ~/.bids-synth/models), "
        "then among those shipped with bids-synth.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the bundles found")
    show = commands.add_parser("show", help="print a bundle's metadata (bundle.json)")
    show.add_argument("bundle", help="bundle id, id@version or folder")
    verify = commands.add_parser(
        "verify",
        help="check the weights' sha256 and the digest of every file (shipped bundles: against "
        "the package's pins) of one bundle, or of every bundle found when none is named",
    )
    target = verify.add_mutually_exclusive_group()
    target.add_argument("bundle", nargs="?", help="bundle id, id@version[#digest] or folder")
    target.add_argument("--all", action="store_true", help="verify every bundle found (default)")
    install = commands.add_parser(
        "install", help="verify a bundle folder and copy it into $BIDS_SYNTH_HOME/models"
    )
    install.add_argument("path", type=Path, help="bundle folder")
    return parser


def _list() -> int:
    from bids_synth.models.registry import list_bundles, search_paths

    bundles = list_bundles()
    if not bundles:
        print("no model bundles found in " + ", ".join(str(p) for p in search_paths()))
        return 0
    for bundle in bundles:
        output = bundle.meta["output"]
        print(
            f"{bundle.ref:<32} {bundle.task:<12} {'+'.join(bundle.meta['input'].get('suffixes', []))}"
            f" -> {output.get('suffix', '?')}  {bundle.path}"
        )
    return 0


def _verify(ref: str | None) -> int:
    from bids_synth.models.registry import find_bundle, list_bundles

    bundles = list_bundles() if ref is None else [find_bundle(ref)]
    failures = []
    for bundle in bundles:
        try:
            bundle.verify()
            print(f"{bundle.ref}: ok (digest {bundle.digest})")
        except ModelBundleError as exc:
            print(f"{bundle.ref}: FAILED: {exc}")
            failures.append(exc)
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise ModelBundleError(
            f"{len(failures)} of {len(bundles)} model bundles failed verification"
        )
    return 0


@guarded
def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from bids_synth.models.registry import find_bundle, install_bundle

    if args.command == "list":
        return _list()
    if args.command == "show":
        bundle = find_bundle(args.bundle)
        print(json.dumps({"path": str(bundle.path), **bundle.meta}, indent=2, sort_keys=True))
        return 0
    if args.command == "verify":
        return _verify(args.bundle)
    bundle = install_bundle(args.path)
    print(f"installed {bundle.ref} into {bundle.path} (digest {bundle.digest})")
    return 0
