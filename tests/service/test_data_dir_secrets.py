"""A process joining an existing log must bring that log's signing key and key pepper: one that
made new ones would publish a verifier key no checkpoint verifies with, and turn every API key
away, while reporting itself ready."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.service.conftest import principal_for
from trueup.service.container import open_services
from trueup.service.files import SecretFileError
from trueup.service.keys import KeyService
from trueup.service.settings import Settings
from trueup.service.signing import SigningKeyError, load_or_create_signer
from trueup.storage import open_storage


def _settings(data_dir: Path, database_url: str) -> Settings:
    return replace(Settings(), data_dir=data_dir, database_url=database_url)


@pytest.fixture
def shared_log(database_url: str, tmp_path: Path) -> str:
    """A database holding a signed log and a tenant with a key, made from ``tmp_path/first``;
    on SQLite the database file stays where ``database_url`` names it."""
    services = open_services(_settings(tmp_path / "first", database_url))
    try:
        principal_for(services)
        services.sealer.load()  # the first, empty, signed head
    finally:
        services.close()
    return database_url


def test_a_second_data_directory_without_the_logs_key_is_refused(shared_log: str, tmp_path: Path) -> None:
    second = tmp_path / "second"
    second.mkdir()
    (second / "key-pepper").write_bytes((tmp_path / "first" / "key-pepper").read_bytes())
    with pytest.raises(SigningKeyError, match=r"^no signing key at .*, but this database holds a log"):
        open_services(_settings(second, shared_log))
    assert not (second / "signing-key.pem").exists()  # no key was made for it
    load_or_create_signer(second / "signing-key.pem", "localhost/trueup")  # a key of its own
    with pytest.raises(SigningKeyError, match=r"did not sign this log's newest checkpoint \(tree size 0"):
        open_services(_settings(second, shared_log))


def test_another_origin_is_refused_too(shared_log: str, tmp_path: Path) -> None:
    settings = replace(_settings(tmp_path / "first", shared_log), log_origin="other.example/log")
    with pytest.raises(SigningKeyError, match=r"with origin 'other\.example/log' did not sign"):
        open_services(settings)


def test_a_missing_pepper_is_refused_where_keys_exist(shared_log: str, tmp_path: Path) -> None:
    second = tmp_path / "second"
    second.mkdir()
    (second / "signing-key.pem").write_bytes((tmp_path / "first" / "signing-key.pem").read_bytes())
    with pytest.raises(SecretFileError, match=r"^no API key pepper at .*, but this database has tenants"):
        open_services(_settings(second, shared_log))
    assert not (second / "key-pepper").exists()
    pepper = (tmp_path / "first" / "key-pepper").read_bytes()
    (second / "key-pepper").write_bytes(pepper + b"\n")  # a line break added on the way
    with pytest.raises(
        SecretFileError, match=r"is not the one .* \(it holds 33 bytes, where Trueup makes 32"
    ):
        open_services(_settings(second, shared_log))
    (second / "key-pepper").write_bytes(pepper)
    open_services(_settings(second, shared_log)).close()  # with both, it joins the log


def test_of_servers_starting_together_on_a_new_database_one_makes_the_first_key(
    database_url: str, tmp_path: Path
) -> None:
    services = open_services(_settings(tmp_path, database_url))
    try:
        first = services.keys.create_first("default", "unlimited")
        assert first is not None and services.keys.authenticate(first.key).tenant_id == first.tenant.id
        assert services.keys.create_first("default", "unlimited") is None  # the second server's turn
        assert [key.id for key in services.keys.list()] == [first.key_id]
    finally:
        services.close()


def test_processes_opening_a_new_log_together_agree_on_its_key_and_pepper(
    database_url: str, tmp_path: Path
) -> None:
    """The first to open a new database binds it to its signing key (the first head is signed
    with it) and its pepper (a check value is kept): one that opens it next with others, before
    any tenant or seal, is refused, not left to publish a key of its own and turn keys away."""
    first = open_services(_settings(tmp_path / "a", database_url))
    try:
        with pytest.raises(SigningKeyError, match=r"^no signing key at .*, but this database holds a log"):
            open_services(_settings(tmp_path / "b", database_url))  # it would have made one
        (tmp_path / "c").mkdir()
        (tmp_path / "c" / "signing-key.pem").write_bytes((tmp_path / "a" / "signing-key.pem").read_bytes())
        with pytest.raises(SecretFileError, match=r"^the API key pepper at .* is not the one this database"):
            open_services(_settings(tmp_path / "c", database_url))
        (tmp_path / "c" / "key-pepper").write_bytes((tmp_path / "a" / "key-pepper").read_bytes())
        joined = open_services(_settings(tmp_path / "c", database_url))  # with both, it joins
        issued = first.keys.create("acme")
        assert joined.keys.authenticate(issued.key).tenant_id == issued.tenant.id
        assert joined.log.verifier_key == first.log.verifier_key
        joined.close()
    finally:
        first.close()


def test_a_process_refused_for_one_secret_binds_a_new_log_to_nothing(
    database_url: str, tmp_path: Path
) -> None:
    """Keys made first (``trueup keys create``, which binds the pepper), then a server from a
    data directory without that pepper: refused, and the log is left unbound to the key it
    made, so the server started next with both files takes it."""
    admin_storage = open_storage(database_url)
    try:
        KeyService(admin_storage, tmp_path / "admin" / "key-pepper").create("acme")
    finally:
        admin_storage.close()
    with pytest.raises(SecretFileError, match="no API key pepper at"):
        open_services(_settings(tmp_path / "refused", database_url))
    assert (tmp_path / "refused" / "signing-key.pem").exists()  # made, but bound to nothing
    storage = open_storage(database_url)
    try:
        assert storage.log.head() is None
    finally:
        storage.close()
    (tmp_path / "next").mkdir()
    (tmp_path / "next" / "key-pepper").write_bytes((tmp_path / "admin" / "key-pepper").read_bytes())
    open_services(_settings(tmp_path / "next", database_url)).close()  # binds the log to its key


@pytest.mark.parametrize("size", [0, 1, 31])
def test_a_pepper_shorter_than_a_new_one_is_refused_on_a_new_database(
    database_url: str, tmp_path: Path, size: int
) -> None:
    """An empty or cut-short key-pepper (a copy that failed part way, a placeholder file) is
    not a secret: keys issued under it were HMACs with no secret in them, and the database was
    bound to it."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "key-pepper").write_bytes(bytes(range(size)))
    with pytest.raises(
        SecretFileError, match=rf"^the API key pepper at .* holds {size} bytes, fewer than 32"
    ):
        open_services(_settings(data_dir, database_url))
    storage = open_storage(database_url)
    try:
        assert storage.tenants.pepper_check() is None  # bound to nothing
    finally:
        storage.close()
    (data_dir / "key-pepper").unlink()
    open_services(_settings(data_dir, database_url)).close()  # a new pepper of its own
    assert len((data_dir / "key-pepper").read_bytes()) == 32
