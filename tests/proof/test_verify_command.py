"""``trueup verify``: the pinned key's name is the log the checkpoint must name; bad files are
one line too."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from trueup.cli import verify
from trueup.proof import (
    CheckpointSigner,
    TreeHead,
    encode_leaf,
    leaf_fields_from_json,
    leaf_hash,
    private_key_from_seed,
    verify_checkpoint,
)

from .reference import load_vector

KEY_VECTOR = load_vector("checkpoint_v1.json")
VKEY = KEY_VECTOR["verifierKey"]
SIGNER = CheckpointSigner(
    private_key_from_seed(bytes.fromhex(KEY_VECTOR["ed25519Seed"])), KEY_VECTOR["keyName"]
)
BUNDLE: dict[str, Any] = load_vector("bundle_v1.json")["bundles"][0]


def test_a_checkpoint_signed_by_the_pinned_key_for_another_log_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head = verify_checkpoint(BUNDLE["checkpoint"], VKEY)
    forged = json.dumps({**BUNDLE, "checkpoint": SIGNER.sign("evil.example/log", head)})
    path = tmp_path / "forged.json"
    path.write_text(forged)
    assert verify.run([str(path), "--key", VKEY]) == 1
    out = capsys.readouterr().out
    assert out == (
        "FAILED: bundle.checkpoint: checkpoint origin 'evil.example/log' is not the expected origin "
        "'trueup.example/log'\n"
    )
    # Whoever knows the log by another name than its key's says so.
    assert verify.run([str(path), "--key", VKEY, "--origin", "evil.example/log"]) == 0
    assert capsys.readouterr().out.startswith("OK: ")
    genuine = tmp_path / "genuine.json"
    genuine.write_text(json.dumps(BUNDLE))
    assert verify.run([str(genuine), "--key", VKEY]) == 0


def test_a_file_nested_too_deeply_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    assert verify.run([str(path), "--key", VKEY]) == 1
    assert capsys.readouterr().out == "FAILED: bundle: nested too deeply to be a bundle\n"


def test_a_key_file_that_cannot_be_read_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(BUNDLE))
    not_text = tmp_path / "key-bytes"
    not_text.write_bytes(b"\xff")
    for key in (not_text, tmp_path):  # not UTF-8; a directory: asked wrongly, exit 2
        assert verify.run([str(bundle), "--key", str(key)]) == 2
        out = capsys.readouterr().out
        assert out.startswith(f"FAILED: cannot read the key file {key}: ") and out.count("\n") == 1
    # Empty (what `--key "$(trueup log-key)"` gives when log-key fails), or neither key nor file.
    assert verify.run([str(bundle), "--key", ""]) == 2
    assert capsys.readouterr().out.startswith("FAILED: --key is empty")
    missing = tmp_path / "no+such.key"
    assert verify.run([str(bundle), "--key", str(missing)]) == 2
    assert capsys.readouterr().out.startswith(f"FAILED: --key '{missing}' is neither a verifier key (")


def test_a_key_asked_wrongly_is_exit_2_whatever_the_bundle_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bundle path that names no file and a `--key "$(trueup log-key)"` that printed nothing:
    the empty key is said, with its exit 2, rather than the file, with exit 1."""
    missing = tmp_path / "no-bundle.json"
    assert verify.run([str(missing), "--key", ""]) == 2
    assert capsys.readouterr().out.startswith("FAILED: --key is empty")
    assert verify.run([str(missing), "--key", str(tmp_path / "no-key")]) == 2
    assert "is neither a verifier key" in capsys.readouterr().out
    # With the key right, a bundle that cannot be read is still nothing checked: 2, not 1.
    assert verify.run([str(missing), "--key", VKEY]) == 2
    assert capsys.readouterr().out.startswith("FAILED: cannot read the bundle: ")
    assert verify.run([str(tmp_path), "--key", VKEY]) == 2  # a directory
    assert capsys.readouterr().out.startswith("FAILED: cannot read the bundle: ")
    not_text = tmp_path / "not-text.json"
    not_text.write_bytes(b'{"leaf": "\xff"}')
    assert verify.run([str(not_text), "--key", VKEY]) == 1  # a file that is there and is no bundle
    assert capsys.readouterr().out.startswith("FAILED: cannot read the bundle: ")
    # `trueup proof … > bundle.json` that failed leaves an empty file: said as that, not as bad JSON.
    empty = tmp_path / "empty.json"
    empty.write_text("\n")
    assert verify.run([str(empty), "--key", VKEY]) == 1
    assert (
        capsys.readouterr().out
        == "FAILED: the bundle is empty (did the command that was to write it fail?)\n"
    )


def test_a_file_no_bundle_or_key_can_be_is_not_read_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """/dev/zero as the bundle or as the key file: read whole, it took gigabytes in seconds and
    ran on until the machine ran out of memory. A bundle is a few KiB, a key a line."""
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(BUNDLE))
    assert verify.run(["/dev/zero", "--key", VKEY]) == 1
    assert capsys.readouterr().out == (
        f"FAILED: the bundle is longer than a proof bundle can be ({verify.MAX_BUNDLE_BYTES:,} bytes)\n"
    )
    assert verify.run([str(bundle), "--key", "/dev/zero"]) == 2
    assert capsys.readouterr().out == (
        "FAILED: the file /dev/zero is longer than a verifier key can be (65536 bytes)\n"
    )
    padded = tmp_path / "padded.json"  # a genuine bundle up to the bound still verifies
    padded.write_text(json.dumps(BUNDLE) + " " * (verify.MAX_BUNDLE_BYTES - len(json.dumps(BUNDLE))))
    assert verify.run([str(padded), "--key", VKEY]) == 0
    capsys.readouterr()


def test_ok_names_the_delta_the_leaf_proves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(BUNDLE))
    assert verify.run([str(path), "--key", VKEY]) == 0
    leaf = BUNDLE["leaf"]
    assert capsys.readouterr().out == (
        f"OK: {BUNDLE['anchorId']} is leaf {BUNDLE['leafIndex']} of the tree of size {BUNDLE['treeSize']} "
        f"with root {BUNDLE['rootHash']}, signed by the pinned key: delta {leaf['delta']} for customer "
        f"{leaf['customerId']!r} of tenant {leaf['tenant']!r}, key {leaf['key']!r}, occurred at "
        f"{leaf['occurredAt']}\n"
    )
    # --anchor: the bundle must prove that delta, not merely some delta of the log.
    assert verify.run([str(path), "--key", VKEY, "--anchor", BUNDLE["anchorId"]]) == 0
    capsys.readouterr()
    assert verify.run([str(path), "--key", VKEY, "--anchor", "a_999"]) == 1
    assert capsys.readouterr().out == f"FAILED: the bundle proves {BUNDLE['anchorId']}, not 'a_999'\n"


def test_a_file_saved_with_a_byte_order_mark_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bundle.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(BUNDLE).encode())
    assert verify.run([str(path), "--key", VKEY]) == 0
    assert capsys.readouterr().out.startswith(f"OK: {BUNDLE['anchorId']} ")
    monkeypatch.setattr("sys.stdin", io.StringIO("\ufeff" + json.dumps(BUNDLE)))  # and on stdin
    assert verify.run(["-", "--key", VKEY]) == 0
    assert capsys.readouterr().out.startswith(f"OK: {BUNDLE['anchorId']} ")


def test_a_key_file_saved_with_a_byte_order_mark_is_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(BUNDLE))
    key_file = tmp_path / "log.key"
    key_file.write_bytes(b"\xef\xbb\xbf" + VKEY.encode() + b"\r\n")
    assert verify.run([str(bundle), "--key", str(key_file)]) == 0
    assert capsys.readouterr().out.startswith(f"OK: {BUNDLE['anchorId']} ")


def test_ok_shows_the_leafs_ids_in_full(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A one-leaf log whose key and customer are long and alike but for their ends."""
    leaf = {**BUNDLE["leaf"], "key": "L" * 200 + "-B\n", "customerId": "c" * 127 + "9"}
    digest = leaf_hash(encode_leaf(leaf_fields_from_json(leaf)))
    checkpoint = SIGNER.sign(KEY_VECTOR["keyName"], TreeHead(size=1, root=digest, timestamp_ms=1))
    bundle = {
        **BUNDLE,
        "anchorId": "a_0",
        "leafIndex": 0,
        "leaf": leaf,
        "leafHash": digest.hex(),
        "treeSize": 1,
        "rootHash": digest.hex(),
        "inclusionProof": [],
        "checkpoint": checkpoint,
    }
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    assert verify.run([str(path), "--key", VKEY]) == 0
    out = capsys.readouterr().out
    assert f"for customer '{'c' * 127}9' of tenant " in out
    assert f", key '{'L' * 200}-B\\n', occurred at " in out and out.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # json.loads keeps the last of two members: the file would show one delta, prove another.
        pytest.param(
            json.dumps(BUNDLE).replace('"delta": ', '"delta": 1000000, "delta": ', 1),
            "FAILED: bundle: duplicate member 'delta'\n",
            id="two deltas in the leaf",
        ),
        pytest.param(
            json.dumps(BUNDLE).replace('"leaf": ', '"leaf": {"delta": 1}, "leaf": ', 1),
            "FAILED: bundle: duplicate member 'leaf'\n",
            id="two leaves",
        ),
        # The API's envelope is unwrapped only when it is one: beside a bundle's own members,
        # "data" would be the bundle checked while the others are the one shown.
        pytest.param(
            json.dumps({**BUNDLE, "data": BUNDLE}),
            "FAILED: bundle: unexpected 'data'\n",
            id="a bundle beside data",
        ),
        # A member's name is shown escaped: it could add a line that reads as a verdict.
        pytest.param(
            json.dumps({**BUNDLE, "\nOK: a_2 is leaf 2": 1}),
            "FAILED: bundle: unexpected '\\nOK: a_2 is leaf 2'\n",
            id="a name that is a line of its own",
        ),
        pytest.param("[]", "FAILED: bundle: must be a JSON object, got list\n", id="not an object"),
        pytest.param('{"version": NaN}', "FAILED: bundle: NaN is not JSON\n", id="NaN"),
    ],
)
def test_a_file_that_could_show_another_bundle_than_the_one_checked_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(text)
    assert verify.run([str(path), "--key", VKEY]) == 1
    assert capsys.readouterr().out == message


def test_the_apis_reply_saved_whole_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "reply.json"
    path.write_text(json.dumps({"statusCode": 200, "success": True, "data": BUNDLE}))
    assert verify.run([str(path), "--key", VKEY]) == 0
    assert capsys.readouterr().out.startswith(f"OK: {BUNDLE['anchorId']} ")


def _bundle_and_head(tmp_path: Path) -> tuple[Path, TreeHead]:
    """The vector bundle in a file, and the head its checkpoint signs."""
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(BUNDLE))
    return bundle, verify_checkpoint(BUNDLE["checkpoint"], VKEY)


def test_held_requires_the_bundle_to_be_of_the_held_tree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--held: the held checkpoint's size and root, or a failure that says which differs."""
    bundle, head = _bundle_and_head(tmp_path)
    origin = KEY_VECTOR["keyName"]

    def held(note: str) -> str:
        path = tmp_path / "held.checkpoint"
        path.write_text(note)
        return str(path)

    assert verify.run([str(bundle), "--key", VKEY, "--held", held(BUNDLE["checkpoint"])]) == 0
    assert capsys.readouterr().out.startswith(
        f"OK: {BUNDLE['anchorId']} is leaf {BUNDLE['leafIndex']} of the held tree of size {head.size} "
    )
    # The log grew past the held checkpoint: the bundle is valid, and of another tree.
    larger = SIGNER.sign(origin, TreeHead(size=head.size + 5, root=b"\x07" * 32, timestamp_ms=2))
    assert verify.run([str(bundle), "--key", VKEY, "--held", held(larger)]) == 1
    assert capsys.readouterr().out == (
        f"FAILED: bundle.treeSize: the bundle proves its leaf in the tree of size {head.size}, not in "
        f"the held checkpoint's tree of size {head.size + 5} (ask for the bundle of that size: "
        f"trueup proof --tree-size {head.size + 5}, or Client.proof_bundle with tree_size={head.size + 5})\n"
    )
    # A delta sealed after the held checkpoint: no bundle of that tree proves it, so none is
    # suggested (a new log's checkpoint, of the empty tree, holds none at all).
    leaf = BUNDLE["leafIndex"]
    for size in (leaf, 0):
        earlier = SIGNER.sign(origin, TreeHead(size=size, root=b"\x07" * 32, timestamp_ms=2))
        assert verify.run([str(bundle), "--key", VKEY, "--held", held(earlier)]) == 1
        assert capsys.readouterr().out == (
            f"FAILED: bundle.leafIndex: leaf {leaf} is not in the held checkpoint's tree of size {size}: "
            "it was sealed after that checkpoint, which cannot prove it (a later one can: trueup follow "
            "moves a held checkpoint on)\n"
        )
    # The same size under another root, both signed by the pinned key: two histories. The
    # bundle's checkpoint is kept beside the held file, as trueup follow keeps one it rejects.
    assert not list(tmp_path.glob("*.rejected*"))  # none kept for a failure of another kind
    forked = SIGNER.sign(origin, TreeHead(size=head.size, root=b"\x07" * 32, timestamp_ms=2))
    rejected = (tmp_path / "held.checkpoint.rejected").resolve()
    for since in ("", " (since an earlier run)"):  # kept once
        assert verify.run([str(bundle), "--key", VKEY, "--held", held(forked)]) == 1
        assert capsys.readouterr().out == (
            f"FAILED: bundle.checkpoint: signed by the pinned key for size {head.size} with root "
            f"{head.root.hex()}, where the held checkpoint of that size states {'07' * 32}: the log has "
            f"shown two histories; keep both checkpoints as evidence; the checkpoint it rejected is kept "
            f"in {rejected}{since}\n"
        )
    assert rejected.read_text() == BUNDLE["checkpoint"]
    assert [path.name for path in tmp_path.glob("*.rejected*")] == ["held.checkpoint.rejected"]
    # A bundle that fails its own checks says so first, held or not.
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps({**BUNDLE, "leafHash": "00" * 32}))
    assert verify.run([str(tampered), "--key", VKEY, "--held", held(forked)]) == 1
    assert capsys.readouterr().out.startswith("FAILED: bundle.leaf: hashes to ")


def test_a_held_file_that_holds_no_checkpoint_of_the_pinned_key_is_nothing_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2, as for a key asked wrongly: the held file is the caller's input, not the server's."""
    bundle, head = _bundle_and_head(tmp_path)
    other = CheckpointSigner(private_key_from_seed(b"\x01" * 32), KEY_VECTOR["keyName"])
    unsigned = "holds no checkpoint signed by the pinned key"
    cases = {
        "missing": (None, "does not exist"),
        "another key": (other.sign(KEY_VECTOR["keyName"], head), unsigned),
        "another log": (SIGNER.sign("other.example/log", head), unsigned),
        "not a note": ("hello\n", unsigned),
        "not text": (b"\xff\xfe", unsigned),
        "too long": ("x" * (64 * 1024 + 1), "is longer than a checkpoint can be (65536 bytes)"),
    }
    for name, (content, said) in cases.items():
        path = tmp_path / f"{name}.checkpoint"
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(content)
        assert verify.run([str(bundle), "--key", VKEY, "--held", str(path)]) == 2, name
        out = capsys.readouterr().out
        assert out.startswith(f"FAILED: {path} ") and said in out and out.count("\n") == 1, (name, out)
    # Known by another name, with --origin: the held note is read as that log's too.
    renamed = tmp_path / "renamed.checkpoint"
    renamed.write_text(SIGNER.sign("evil.example/log", head))
    forged = tmp_path / "renamed.json"
    forged.write_text(json.dumps({**BUNDLE, "checkpoint": SIGNER.sign("evil.example/log", head)}))
    argv = [str(forged), "--key", VKEY, "--origin", "evil.example/log", "--held", str(renamed)]
    assert verify.run(argv) == 0
    assert capsys.readouterr().out.startswith("OK: ")
    # A directory is not a file to read; nor is an empty name the working directory.
    assert verify.run([str(bundle), "--key", VKEY, "--held", str(tmp_path)]) == 2
    assert capsys.readouterr().out.startswith(f"FAILED: cannot read {tmp_path}: ")
    assert verify.run([str(bundle), "--key", VKEY, "--held", ""]) == 2
    assert capsys.readouterr().out == (
        "FAILED: the checkpoint file's name is empty (did the command giving it fail?)\n"
    )
