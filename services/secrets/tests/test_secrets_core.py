"""The decision for one Secret, without a cluster: vocabulary, ownership, no overwrite, regenerate, rotation, grace."""

from __future__ import annotations

import dataclasses

import pytest
from secrets_helpers import MITTWALD, OURS, START, observed

from homelab_secrets import spec as ann
from homelab_secrets.core import Decision, Observed, decide, describe, fingerprint, finish_hooked_rotation, hook_failed
from homelab_secrets.spec import Spec, SpecError, parse

DAY = 86400.0


def applied(obs: Observed, decision: Decision) -> Observed:
    """``obs`` after the decision's patch was written (what the next pass sees)."""
    data = dict(obs.data)
    for key, value in decision.patch.data.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    notes = dict(obs.annotations)
    for key, note in decision.patch.annotations.items():
        if note is None:
            notes.pop(key, None)
        else:
            notes[key] = note
    version = str(int(obs.resource_version) + 1)
    return dataclasses.replace(obs, data=data, annotations=notes, resource_version=version)


# -- the vocabulary -------------------------------------------------------------------------------------------------


def test_mittwald_annotations_are_read_as_users_know_them() -> None:
    spec = parse(
        {
            MITTWALD + "autogenerate": "password,token",
            MITTWALD + "length": "32B",
            MITTWALD + "encoding": "hex",
            MITTWALD + "regenerate": "token",
        }
    )
    assert (spec.keys, spec.length, spec.length_in_bytes, spec.encoding) == (("password", "token"), 32, True, "hex")
    assert spec.regenerate_keys == ("token",)
    assert spec.mittwald


def test_regenerate_true_means_every_key_not_a_key_named_true() -> None:
    spec = parse({MITTWALD + "autogenerate": "password", MITTWALD + "regenerate": "true"})
    assert spec.regenerate_all
    assert parse({MITTWALD + "autogenerate": "password", MITTWALD + "regenerate": "yes"}).regenerate_all


@pytest.mark.parametrize(
    ("annotations", "named"),
    [
        ({MITTWALD + "autogenerate": "password", MITTWALD + "type": "strnig"}, "type: unknown type 'strnig'"),
        ({MITTWALD + "autogenerate": "password", MITTWALD + "encoding": "base58"}, "encoding: unknown encoding"),
        ({MITTWALD + "autogenerate": "password", MITTWALD + "length": "32b"}, "length: '32b' is not a length"),
        ({MITTWALD + "autogenerate": "password", MITTWALD + "length": "0"}, "length: 0 is out of range"),
        ({MITTWALD + "autogenerate": "password", MITTWALD + "regenerate": "pasword"}, "regenerate: pasword is not"),
        ({MITTWALD + "type": "string"}, "name the keys to generate"),
        ({OURS + "generate": "password", OURS + "charset": "lower,emoji"}, "charset: 'lower,emoji'"),
        ({OURS + "generate": "password", OURS + "rotate-every": "30d"}, "rotate-every: '30d' is not a duration"),
        ({OURS + "generate": "password", OURS + "rotate-evry": "720h"}, "rotate-evry: unknown annotation"),
        ({OURS + "generate": "a", OURS + "rotate-every": "1h", OURS + "grace": "2h"}, "grace: the grace period"),
        ({OURS + "generate": "password", OURS + "hook": "gitea"}, "hook-url: the gitea hook needs"),
        ({OURS + "type": "ssh-keypair", OURS + "key-bits": "1024"}, "key-bits: '1024'"),
    ],
)
def test_unknown_values_are_errors_naming_the_annotation(annotations: dict[str, str], named: str) -> None:
    with pytest.raises(SpecError, match=named.replace("(", r"\(")):
        parse(annotations)


def test_our_keys_win_over_mittwalds() -> None:
    spec = parse({MITTWALD + "autogenerate": "a", MITTWALD + "length": "10", OURS + "length": "20"})
    assert spec.length == 20


def test_fixed_keys_of_the_typed_secrets() -> None:
    assert parse({MITTWALD + "type": "ssh-keypair"}).keys == ("ssh-privatekey", "ssh-publickey")
    assert parse({MITTWALD + "type": "basic-auth", MITTWALD + "autogenerate": "auth"}).keys == (
        "auth",
        "username",
        "password",
    )
    with pytest.raises(SpecError, match="writes exactly"):
        parse({MITTWALD + "type": "basic-auth", MITTWALD + "autogenerate": "token"})


# -- fill, no overwrite, ownership ----------------------------------------------------------------------------------


def test_an_empty_annotated_secret_is_filled_and_marked() -> None:
    obs = observed({MITTWALD + "autogenerate": "password"})
    decision = decide(obs, START)
    assert decision.action == "write"
    assert decision.generated == ("password",)
    assert len(decision.patch.data["password"] or b"") == 40
    notes = decision.patch.annotations
    assert notes[MITTWALD + "secure"] == "yes"
    assert notes[ann.GENERATED_AT] == "2027-01-15T08:00:00Z"
    assert notes[ann.STATUS] == "ok"


def test_a_rerun_changes_nothing() -> None:
    obs = observed({MITTWALD + "autogenerate": "password", OURS + "rotate-every": "720h"})
    after = applied(obs, decide(obs, START))
    again = decide(after, START + 60)
    assert again.action == "none"
    assert not again.patch


def test_a_value_the_user_set_is_never_overwritten() -> None:
    # mittwald's own README example: the user sets username, the controller fills password.
    obs = observed({MITTWALD + "autogenerate": "password"}, {"username": b"someuser"}, uid="u")
    decision = decide(obs, START)
    assert set(decision.patch.data) == {"password"}
    after = applied(obs, decision)
    # ... and a later edit of a generated key by a person is kept through rotations and regenerate requests
    edited = dataclasses.replace(
        after,
        data=after.data | {"password": b"chosen-by-hand"},
        annotations=after.annotations | {OURS + "rotate-every": "1h", ann.ROTATE_REQUESTED: "2030-01-01T00:00:00Z"},
    )
    later = decide(edited, START + 2 * 3600)
    assert later.patch.data == {}
    assert later.user_keys == ("password",)
    assert describe(edited).rotatable is False


def test_a_foreign_secret_with_values_is_refused_and_nothing_written() -> None:
    obs = observed({MITTWALD + "autogenerate": "password"}, {"password": b"hunter2"})
    decision = decide(obs, START)
    assert decision.action == "refuse"
    assert not decision.patch
    assert "apps/creds" in decision.reason
    assert OURS + 'managed: "true"' in decision.reason


def test_a_foreign_secret_marked_managed_is_adopted_without_losing_its_value() -> None:
    obs = observed({OURS + "generate": "password,token", OURS + "managed": "true"}, {"password": b"hunter2"})
    decision = decide(obs, START)
    assert decision.action == "write"
    assert set(decision.patch.data) == {"token"}
    assert decision.user_keys == ("password",)


def test_a_secret_mittwald_filled_is_adopted() -> None:
    notes = {
        MITTWALD + "autogenerate": "password,token",
        MITTWALD + "autogenerate-generated-at": "2024-01-01T00:00:00Z",
    }
    decision = decide(observed(notes, {"password": b"from-mittwald"}), START)
    assert decision.action == "write"
    assert set(decision.patch.data) == {"token"}


def test_invalid_annotations_write_only_the_status() -> None:
    obs = observed({MITTWALD + "autogenerate": "password", MITTWALD + "encoding": "base58"})
    decision = decide(obs, START)
    assert decision.action == "invalid"
    assert not decision.patch.data
    assert decision.patch.annotations[ann.STATUS].startswith("error: " + MITTWALD + "encoding: unknown encoding")


def test_half_a_user_set_key_pair_is_an_error_not_a_new_pair() -> None:
    obs = observed({OURS + "type": "ssh-keypair", OURS + "managed": "true"}, {"ssh-publickey": b"ssh-ed25519 AAAA"})
    decision = decide(obs, START)
    assert decision.action == "invalid"
    assert "ssh-publickey holds a value this controller did not write" in decision.reason


# -- regenerate -----------------------------------------------------------------------------------------------------


def test_mittwald_regenerate_is_one_shot_and_removed() -> None:
    obs = applied(
        observed({MITTWALD + "autogenerate": "a,b"}), decide(observed({MITTWALD + "autogenerate": "a,b"}), START)
    )
    asked = dataclasses.replace(obs, annotations=obs.annotations | {MITTWALD + "regenerate": "b"})
    decision = decide(asked, START + 10)
    assert decision.rotated == ("b",)
    assert decision.patch.data["b.previous"] == obs.data["b"]
    assert decision.patch.annotations[MITTWALD + "regenerate"] is None
    assert decide(applied(asked, decision), START + 20).rotated == ()


def test_our_regenerate_token_is_safe_to_keep_in_git() -> None:
    base = {OURS + "generate": "a", OURS + "regenerate": "2026-11"}
    first = applied(observed(base), decide(observed(base), START))
    # the first fill records the token: a token present from the start regenerates nothing
    assert decide(first, START + 5).action == "none"
    bumped = dataclasses.replace(first, annotations=first.annotations | {OURS + "regenerate": "2026-12"})
    decision = decide(bumped, START + 10)
    assert decision.rotated == ("a",)
    assert decide(applied(bumped, decision), START + 20).action == "none"


# -- rotation with grace --------------------------------------------------------------------------------------------


def test_rotation_keeps_the_previous_value_for_the_grace_window_then_removes_it() -> None:
    notes = {OURS + "generate": "password", OURS + "rotate-every": "720h", OURS + "grace": "24h"}
    filled = applied(observed(notes), decide(observed(notes), START))
    early = decide(filled, START + 29 * DAY)
    assert early.action == "none"
    assert early.next_rotation == START + 30 * DAY
    rotation = decide(filled, START + 30 * DAY)
    assert rotation.rotated == ("password",)
    assert rotation.patch.data["password.previous"] == filled.data["password"]
    assert rotation.patch.annotations[ann.ROTATED_AT] == "2027-02-14T08:00:00Z"
    assert rotation.patch.annotations[ann.PREVIOUS_UNTIL] == "2027-02-15T08:00:00Z"
    rotated = applied(filled, rotation)
    assert decide(rotated, START + 30.5 * DAY).action == "none"
    cleanup = decide(rotated, START + 31 * DAY)
    assert cleanup.patch.data == {"password.previous": None}
    assert cleanup.patch.annotations == {ann.PREVIOUS_UNTIL: None}
    assert cleanup.next_rotation == START + 60 * DAY


def test_a_rotation_through_a_hook_parks_the_new_value_first() -> None:
    notes = {
        OURS + "generate": "password",
        OURS + "rotate-every": "1h",
        OURS + "hook": "gitea",
        OURS + "hook-url": "http://gitea:3000",
    }
    filled = applied(observed(notes, {"username": b"gitea-admin"}), decide(observed(notes, {"username": b"x"}), START))
    parked = decide(filled, START + 3600)
    assert set(parked.patch.data) == {"password.pending"}  # the current value is untouched
    waiting = applied(filled, parked)
    call = decide(waiting, START + 3601)
    assert call.action == "hook"
    assert call.hook is not None
    assert (call.hook.current, call.hook.new) == (filled.data["password"], parked.patch.data["password.pending"])
    failed = applied(waiting, Decision("write", patch=hook_failed(waiting, "HTTP 500", START + 3601)))
    assert failed.data["password"] == filled.data["password"]
    assert decide(failed, START + 3602, hook_retry=300).action == "none"  # waits before retrying
    assert decide(failed, START + 3601 + 300, hook_retry=300).action == "hook"
    spec = parse(failed.annotations)
    done = applied(failed, Decision("write", patch=finish_hooked_rotation(failed, spec, START + 4000)))
    assert done.data["password"] == parked.patch.data["password.pending"]
    assert done.data["password.previous"] == filled.data["password"]
    assert "password.pending" not in done.data
    assert describe(done).state == "ok"
    assert decide(done, START + 4001).action == "none"


def test_fingerprints_tell_our_values_from_the_users() -> None:
    assert fingerprint("uid-1", "password", b"x") != fingerprint("uid-2", "password", b"x")
    notes = {OURS + "generate": "password", OURS + "rotate-every": "1h"}
    filled = applied(observed(notes), decide(observed(notes), START))
    edited = dataclasses.replace(filled, data={"password": b"my-own"})
    assert decide(edited, START + 7200).rotated == ()
    assert describe(edited).user_keys == ("password",)


def test_defaults_are_mittwalds() -> None:
    assert parse({MITTWALD + "autogenerate": "a"}) == Spec(keys=("a",), mittwald=True)


def test_a_requested_rotation_is_honoured_once_whatever_its_time() -> None:
    notes = {OURS + "generate": "password"}
    filled = applied(observed(notes), decide(observed(notes), START))
    # a request stamped in the future (another replica's clock) must not rotate again and again
    asked = dataclasses.replace(filled, annotations=filled.annotations | {ann.ROTATE_REQUESTED: "2100-01-01T00:00:00Z"})
    decision = decide(asked, START + 10)
    assert decision.rotated == ("password",)
    assert decision.patch.annotations[ann.ROTATE_REQUESTED] is None
    assert decide(applied(asked, decision), START + 20).rotated == ()
