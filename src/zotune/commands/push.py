"""``zotune push``: upload a run's model folder to the Hugging Face hub."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser, add_setting_flags) -> None:
    parser.add_argument("folder", help="the folder to upload, e.g. runs/demo/best")
    parser.add_argument("repo_id", help="the model repository, e.g. your-name/smollm2-135m-mezo-rt")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--revision", help="the branch to commit to (default: main)")
    parser.add_argument("--commit-message", help="(default: 'Upload FOLDER (zotune)')")


def run(args: argparse.Namespace, say) -> int:
    from zotune.integrations.hub import push_folder

    url = push_folder(args.folder, args.repo_id, private=args.private, revision=args.revision,
                      message=args.commit_message)
    say(f"pushed {args.folder} -> {url}")
    return 0
