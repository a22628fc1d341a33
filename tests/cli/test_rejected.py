"""``keep_rejected``: the evidence of a fork kept beside a held file, and never an error of its
own while a failure is being said."""

from __future__ import annotations

from pathlib import Path

from tests.proof.reference import load_vector
from trueup.cli.keyarg import MAX_NOTE_BYTES
from trueup.cli.rejected import keep_rejected
from trueup.proof import CheckpointSigner, TreeHead, parse_verifier_key, private_key_from_seed

KEY_VECTOR = load_vector("checkpoint_v1.json")
KEY = parse_verifier_key(KEY_VECTOR["verifierKey"])
SIGNER = CheckpointSigner(
    private_key_from_seed(bytes.fromhex(KEY_VECTOR["ed25519Seed"])), KEY_VECTOR["keyName"]
)


def test_a_note_too_long_to_keep_is_said_and_nothing_is_written(tmp_path: Path) -> None:
    held = tmp_path / "held.checkpoint"
    note = SIGNER.sign(KEY.name, TreeHead(size=3, root=b"\x07" * 32, timestamp_ms=2))
    text, signature = note.split("\n\n", 1)
    padded = text + "\n" + "x" * MAX_NOTE_BYTES + "\n\n" + signature  # not the signed text: never kept
    said = keep_rejected(held, padded, KEY)
    assert said.startswith("; the checkpoint it rejected was not kept: "), said
    assert not list(tmp_path.iterdir())
    assert (
        keep_rejected(held, note, KEY) == f"; the checkpoint it rejected is kept in {held.resolve()}.rejected"
    )
    assert (tmp_path / "held.checkpoint.rejected").read_text() == note
