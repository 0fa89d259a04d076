"""Secrets Sync API (`sys/sync/...`, `sys/activation-flags`) end to end against a dev-mode kvsync.

Follows Vault's API documentation for Secrets Sync; where it is silent, each test states the behaviour
kvsync chose where it asserts it. Only the `in-mem` destination really writes; its external objects are read back (read-only) at
`GET sys/sync/destinations/in-mem/<name>/objects` -> `data.objects` = {external name: {value, tags}}.
`associations/set` runs the first sync inline and answers with its status, so no polling is needed for it.

One dev server per module. Every test uses its own names. Responses (requests and hvac) are recorded;
the last test searches all of them and the server's logs for the credentials and KV values sent.
Tests run in file order: `test_00_*` first (it also cleans up, so it holds in any order), the leak
test `test_zz_*` last (it makes its own traffic too, so it can fail when run alone).
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlsplit

import hvac
import pytest
import requests
from hvac import exceptions as hexc

from kvsync_helpers import ACCESSOR_RE, REQUEST_TIMEOUT, assert_alive, marker_variants, unique
from sync_helpers import (
    CLOUD_TYPES,
    DEFAULT_TEMPLATES,
    ERROR_STATUSES,
    MASK,
    TPL_KEY_AWS,
    TPL_PATH_AWS,
    Recorded,
    RecordingHttp,
    Sent,
    assert_updated_at,
    assoc_entry_check,
    attach_recorder,
    create_dest,
    cred,
    data,
    delete_dest,
    dest_path,
    empty_404,
    error,
    errors,
    gen_rsa_pem,
    github_fingerprint,
    have_openssl,
    json_value,
    kv_value,
    mount_accessor,
    new_kv2_mount,
    no_content,
    objects,
    ok,
    pem_body_lines,
    read_assocs,
    read_dest,
    remove_assoc,
    set_assoc,
    write_kv,
)

ALL_TYPES = ["aws-sm", "azure-kv", "gcp-sm", "gh", "vercel-project", "in-mem"]
DEFAULT_CONFIG = {"disabled": False, "queue_capacity": 1000000}
SECRET = "secret"  # dev mode's KV-v2 mount


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _server_survives(dev_server):
    yield
    assert_alive(dev_server.server, dev_server.token)


@pytest.fixture
def api(dev_server):
    """Raw HTTP with the root token; every response body is recorded for the leak test."""
    h = RecordingHttp(dev_server.addr, dev_server.token)
    yield h
    h.close()


@pytest.fixture
def hv(dev_server):
    """hvac (a client that is not ours), its responses recorded too."""
    session = requests.Session()
    session.trust_env = False
    attach_recorder(session)
    c = hvac.Client(url=dev_server.addr, token=dev_server.token, session=session, timeout=REQUEST_TIMEOUT)
    yield c
    c.adapter.close()


@pytest.fixture(scope="module")
def acc(dev_server):
    """Accessor of dev mode's `secret/` mount."""
    h = RecordingHttp(dev_server.addr, dev_server.token)
    try:
        a = mount_accessor(h, SECRET)
    finally:
        h.close()
    assert ACCESSOR_RE.match(a), a
    return a


def kv_secret(api, path=None, **extra):
    """Write a secret with fresh (registered) string values under secret/; returns (path, data)."""
    path = path or unique("s")
    payload = {"user": kv_value("user"), "password": kv_value("pw")}
    payload.update(extra)
    write_kv(api, SECRET, path, payload)
    return path, payload


def in_mem(api, body=None, name=None) -> str:
    name = name or unique("im")
    create_dest(api, "in-mem", name, body or {})
    return name


def synced(r, key):
    """`set` answered 200 and the association row `key` is SYNCED; returns the whole map."""
    d = data(r)
    assert set(d) == {"associated_secrets", "store_name", "store_type"}, sorted(d)
    rows = d["associated_secrets"]
    assert key in rows, f"{key} not in {sorted(rows)}"
    assert rows[key]["sync_status"] == "SYNCED", rows[key]
    return rows


def purge(api, kind, name):
    """Delete a destination (purging its associations) and wait (bounded) until it is gone."""
    r = delete_dest(api, kind, name, purge=True)
    assert r.status_code in (200, 204), f"purge {kind}/{name}: {r.status_code} {r.text}"
    wait_gone(api, kind, name)


def wait_gone(api, kind, name, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        r = api.get(dest_path(kind, name))
        if r.status_code == 404:
            empty_404(r)
            return
        # still purging in the background: the read must say so (`purge_initiated_at`)
        d = data(r)
        assert "purge_initiated_at" in d, f"{kind}/{name} still readable and not purging: {d}"
        assert_updated_at(d["purge_initiated_at"])
        assert "purge_error" not in d, d
        assert time.monotonic() < deadline, f"{kind}/{name} not deleted {timeout}s after purge: {d}"
        time.sleep(0.1)


def realistic(kind: str) -> tuple:
    """(request body, names of its sensitive fields) of a realistic
    destination of each type (every documented connection detail). Credentials are fresh and registered."""
    if kind == "aws-sm":
        body = {
            "access_key_id": cred("AKIA"),
            "secret_access_key": cred("awssecret"),
            "region": "us-east-1",
            "role_arn": "arn:aws:iam::111122223333:role/vault-sync",
            "external_id": "ext-4a1f",
            "custom_tags": {"team": "payments", "env": "prod"},
        }
        return body, {"access_key_id", "secret_access_key"}
    if kind == "azure-kv":
        body = {
            "key_vault_uri": "https://kvsync-test.vault.azure.net",
            "client_id": "6d9b2f1e-3c4a-4b5d-8e7f-0a1b2c3d4e5f",
            "client_secret": cred("azsecret~"),
            "tenant_id": "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
            "cloud": "AzurePublicCloud",
        }
        return body, {"client_secret"}
    if kind == "gcp-sm":
        sa = {
            "type": "service_account",
            "project_id": "kvsync-proj",
            "private_key_id": cred("gcpkeyid"),
            "private_key": "-----BEGIN PRIVATE KEY-----\n" + cred("gcpkey") + "\n-----END PRIVATE KEY-----\n",
            "client_email": "sync@kvsync-proj.iam.gserviceaccount.com",
            "client_id": "112233445566778899",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
        body = {"credentials": json.dumps(sa), "project_id": "kvsync-proj", "custom_tags": {"owner": "sre"}}
        return body, {"credentials"}
    if kind == "gh":
        body = {"access_token": cred("ghp_"), "repository_owner": "kvsync", "repository_name": "demo-repo"}
        return body, {"access_token"}
    if kind == "gh-org":
        body = {
            "access_token": cred("ghp_"),
            "secrets_location": "organization",
            "organization_name": "kvsync-org",
            "organization_visibility": "selected",
            "selected_repository_names": ["api", "web"],
        }
        return body, {"access_token"}
    if kind == "vercel-project":
        body = {
            "access_token": cred("vercel"),
            "project_id": "prj_" + unique("p").replace("-", ""),
            "team_id": "team_kvsync",
            "deployment_environments": ["development", "production"],
        }
        return body, {"access_token"}
    raise AssertionError(kind)


def assert_no_stray_mask(obj, allowed_paths, path=""):
    """No `*` anywhere in a destination read, except in the masked sensitive fields."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert_no_stray_mask(v, allowed_paths, f"{path}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            assert_no_stray_mask(v, allowed_paths, f"{path}[{i}]")
    elif isinstance(obj, str):
        if path in allowed_paths:
            assert obj == MASK, (path, obj)
        else:
            assert "*" not in obj, f"asterisks at {path}: {obj!r}"


def assert_no_creds_in(text: str):
    for c in Sent.credentials:
        assert c not in text, f"credential {c[:8]}... echoed back: {text[:300]}"


# --------------------------------------------------------------------------------------------
# empty state, activation
# --------------------------------------------------------------------------------------------


def test_00_empty_lists_are_404(api):
    # Clean slate whatever ran before: force-delete every destination, then every GitHub App.
    r = api.list("sys/sync/destinations")
    if r.status_code == 200:
        for kind, names in data(r)["key_info"].items():
            for n in names:
                no_content(delete_dest(api, kind, n, force_delete=True))
    r = api.list("sys/sync/github-apps")
    if r.status_code == 200:
        for n in data(r)["keys"]:
            no_content(api.delete(f"sys/sync/github-apps/{n}"))

    empty_404(api.list("sys/sync/destinations"))
    empty_404(api.get("sys/sync/destinations", params={"list": "true"}))
    for kind in ALL_TYPES:
        empty_404(api.list(f"sys/sync/destinations/{kind}"))
    empty_404(api.list("sys/sync/associations"))
    empty_404(api.get("sys/sync/associations", params={"list": "true"}))
    empty_404(api.list("sys/sync/github-apps"))


def test_activation_flags_read_without_a_token(api):
    """GET sys/activation-flags is unauthenticated."""
    d = data(api.get("sys/activation-flags", token=None))
    assert set(d) == {"activated", "unactivated"}, d
    assert "secrets-sync" in d["activated"], d
    assert "secrets-sync" not in d["unactivated"], d


def test_activation_flags(api):
    d = data(api.get("sys/activation-flags"))
    assert set(d) == {"activated", "unactivated"}, d
    assert "secrets-sync" in d["activated"] and "secrets-sync" not in d["unactivated"], d
    # activation is harmless when repeated
    for _ in range(2):
        d = data(api.post("sys/activation-flags/secrets-sync/activate"))
        assert set(d) == {"activated", "unactivated"}, d
        assert "secrets-sync" in d["activated"], d
        assert "secrets-sync" not in d["unactivated"], d
    data(api.put("sys/activation-flags/secrets-sync/activate"))
    # activating needs a token
    error(api.post("sys/activation-flags/secrets-sync/activate", token=None), 403)


# --------------------------------------------------------------------------------------------
# the whole workflow end to end: mount, write, destination, associate, sync, change, unsync, delete
# --------------------------------------------------------------------------------------------


def list_or_empty(api, path) -> dict:
    r = api.list(path)
    if r.status_code == 404:
        empty_404(r)
        return {}
    return data(r)


def test_acceptance_outline(api):
    # activate the feature
    d = data(api.post("sys/activation-flags/secrets-sync/activate"))
    assert "secrets-sync" in d["activated"]
    # mount a KV-v2 engine
    mount = unique("my-kv")
    no_content(api.post(f"sys/mounts/{mount}", json={"type": "kv-v2"}))
    # read the mount: its accessor names the secrets in associations
    r = api.get(f"sys/mounts/{mount}")
    assert r.status_code == 200, r.text
    macc = r.json()["data"]["accessor"]
    assert ACCESSOR_RE.match(macc), macc
    assert r.json()["data"]["options"]["version"] == "2"
    # write a secret
    secret = {"user": "app", "password": kv_value("s3cr3t")}
    r = api.post(f"{mount}/data/app/db", json={"data": secret})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["version"] == 1

    dests_before = list_or_empty(api, "sys/sync/destinations")
    assocs_before = list_or_empty(api, "sys/sync/associations")

    # create a destination: the default granularity and name template are materialised
    t1 = unique("t1")
    d = create_dest(api, "in-mem", t1, {})
    assert d["options"]["granularity_level"] == "secret-path"
    assert d["options"]["secret_name_template"] == TPL_PATH_AWS
    # an unknown destination is an empty 404
    empty_404(api.get(f"sys/sync/destinations/aws-sm/{unique('nope')}"))
    empty_404(api.get("sys/sync/destinations/aws-sm/nope"))
    # list destinations
    d = data(api.list("sys/sync/destinations"))
    assert set(d) == {"keys", "key_info", "total_destinations"}, d
    before_info = dests_before.get("key_info", {})
    assert d["keys"] == sorted(set(before_info) | {"in-mem"}), d
    assert sorted(d["key_info"]["in-mem"]) == sorted(before_info.get("in-mem", []) + [t1]), d
    assert d["total_destinations"] == dests_before.get("total_destinations", 0) + 1, d

    # associate the secret
    key = f"{macc}/app/db"
    r = set_assoc(api, "in-mem", t1, mount, "app/db")
    d = data(r)
    assert d["store_name"] == t1 and d["store_type"] == "in-mem", d
    assert set(d) == {"associated_secrets", "store_name", "store_type"}, d
    assert list(d["associated_secrets"]) == [key], d
    entry = d["associated_secrets"][key]
    assoc_entry_check(entry, accessor=macc, mount=mount, secret="app/db")
    assert entry["sync_status"] == "SYNCED", entry  # associations/set syncs inline

    # read the associations; the destination holds the secret, tagged
    rows = read_assocs(api, "in-mem", t1)
    assert list(rows) == [key] and rows[key]["sync_status"] == "SYNCED", rows
    assoc_entry_check(rows[key], accessor=macc, mount=mount, secret="app/db")
    objs = objects(api, t1)
    ext = f"vault/{macc}/app/db"
    assert list(objs) == [ext], objs
    assert json_value(objs[ext]["value"]) == secret, objs[ext]
    assert objs[ext]["tags"] == {"hashicorp:vault": ""}, objs[ext]

    # the destinations of the secret (query form and path form)
    for r in (
        api.get("sys/sync/associations/destinations", params={"mount": mount, "secret_name": "app/db"}),
        api.get(f"sys/sync/associations/{mount}/app/db"),
    ):
        d = data(r)
        assert list(d) == ["associated_destinations"], d
        assert list(d["associated_destinations"]) == [f"in-mem/{t1}"], d
        e = d["associated_destinations"][f"in-mem/{t1}"]
        assert set(e) == {"type", "name", "sync_status", "updated_at"}, e
        assert (e["type"], e["name"], e["sync_status"]) == ("in-mem", t1, "SYNCED"), e
        assert_updated_at(e["updated_at"])

    # list all associations
    d = data(api.list("sys/sync/associations"))
    assert set(d) == {"keys", "key_info", "total_associations", "total_secrets"}, d
    k = f"{mount}/app/db"
    assert sorted(d["keys"]) == sorted(assocs_before.get("keys", []) + [k]), d
    assert d["key_info"][k] == [{"mount": f"{mount}/", "secret_path": "app/db"}], d
    assert d["total_associations"] == assocs_before.get("total_associations", 0) + 1, d
    assert d["total_secrets"] == assocs_before.get("total_secrets", 0) + 1, d

    # a destination with associations cannot be deleted
    error(delete_dest(api, "in-mem", t1), 400, "association")
    assert read_dest(api, "in-mem", t1)["name"] == t1
    assert list(objects(api, t1)) == [ext]

    # remove the association: the external object is deleted, the row UNSYNCED
    d = data(remove_assoc(api, "in-mem", t1, mount, "app/db"))
    assert set(d) == {"associated_secrets", "store_name", "store_type"}, d
    assert d["associated_secrets"].get(key, {"sync_status": "UNSYNCED"})["sync_status"] == "UNSYNCED", d
    assert objects(api, t1) == {}
    rows = read_assocs(api, "in-mem", t1)
    assert rows.get(key, {"sync_status": "UNSYNCED"})["sync_status"] == "UNSYNCED", rows
    d = data(api.get("sys/sync/associations/destinations", params={"mount": mount, "secret_name": "app/db"}))
    for e in d["associated_destinations"].values():
        assert e["sync_status"] == "UNSYNCED", d

    # delete the destination
    no_content(delete_dest(api, "in-mem", t1))
    empty_404(api.get(dest_path("in-mem", t1)))
    errors(api.get(f"sys/sync/destinations/in-mem/{t1}/objects"), 404)
    after = list_or_empty(api, "sys/sync/destinations")
    assert after == dests_before, (after, dests_before)

    # sys/sync/config: see test_sync_config
    no_content(api.delete(f"sys/mounts/{mount}"))


# --------------------------------------------------------------------------------------------
# destination types, read shapes, lists
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["aws-sm", "azure-kv", "gcp-sm", "gh", "vercel-project"])
def test_destination_types_read_back_masked_with_defaults(api, kind):
    body, sensitive = realistic(kind)
    name = unique(kind)
    r = api.post(dest_path(kind, name), json=body)
    assert_no_creds_in(r.text)
    created = data(r)
    r = api.get(dest_path(kind, name))
    assert_no_creds_in(r.text)
    d = data(r)
    assert created == d, (created, d)

    assert set(d) == {"name", "type", "connection_details", "options"}, d
    assert d["name"] == name and d["type"] == kind
    cd = d["connection_details"]
    for f in sensitive:
        assert cd.get(f) == MASK, (f, cd)
    for f, v in body.items():
        if f in sensitive or f == "custom_tags":
            continue
        got = cd.get(f)
        if isinstance(v, list):
            assert isinstance(got, list) and sorted(got) == sorted(v), (f, got)
        else:
            assert got == v, (f, got, v)
    assert_no_stray_mask(d, {f"/connection_details/{f}" for f in sensitive})

    granularity, tpl_path, tpl_key = DEFAULT_TEMPLATES[kind]
    opts = d["options"]
    assert opts["granularity_level"] == granularity, opts
    assert opts["secret_name_template"] == (tpl_path if granularity == "secret-path" else tpl_key), opts
    if kind in CLOUD_TYPES:
        assert set(opts) == {"granularity_level", "secret_name_template", "custom_tags"}, opts
        assert opts["custom_tags"] == body.get("custom_tags", {}), opts
    else:
        assert set(opts) == {"granularity_level", "secret_name_template"}, opts

    # the other granularity materialises the other default template
    other = "secret-key" if granularity == "secret-path" else "secret-path"
    d = data(api.post(dest_path(kind, name), json={"granularity": other}))
    assert d["options"]["granularity_level"] == other
    assert d["options"]["secret_name_template"] == (tpl_path if other == "secret-path" else tpl_key), d["options"]
    for f in sensitive:  # a POST merges: credentials absent from it are kept
        assert d["connection_details"].get(f) == MASK, d

    no_content(delete_dest(api, kind, name))
    empty_404(api.get(dest_path(kind, name)))


def test_in_mem_read_shape_and_empty_objects(api):
    name = in_mem(api)
    d = read_dest(api, "in-mem", name)
    assert d == {
        "name": name,
        "type": "in-mem",
        "connection_details": {},
        "options": {"granularity_level": "secret-path", "secret_name_template": TPL_PATH_AWS},
    }, d
    assert objects(api, name) == {}
    assert read_assocs(api, "in-mem", name) == {}
    no_content(delete_dest(api, "in-mem", name))


def test_identity_token_fields_masked_ttl_in_seconds(api):
    name = unique("aws-wif")
    aud = cred("aud-")
    d = create_dest(
        api,
        "aws-sm",
        name,
        {
            "region": "eu-west-1",
            "role_arn": "arn:aws:iam::111122223333:role/wif",
            "identity_token_audience": aud,
            "identity_token_ttl": "30m",
        },
    )
    cd = d["connection_details"]
    assert cd["identity_token_audience"] == MASK, cd
    assert cd["identity_token_ttl"] == 1800, cd  # reads back as integer seconds
    assert "access_key_id" not in cd or cd["access_key_id"] in ("",), cd  # unset: omitted (or "")
    no_content(delete_dest(api, "aws-sm", name))


def test_networking_fields_read_back_under_connection_details(api):
    name = in_mem(api, {"allowed_ipv4_addresses": "10.0.0.0/8, 192.168.1.0/24", "allowed_ports": "443,8443"})
    cd = read_dest(api, "in-mem", name)["connection_details"]
    assert cd == {"allowed_ipv4_addresses": ["10.0.0.0/8", "192.168.1.0/24"], "allowed_ports": [443, 8443]}, cd
    d = data(
        api.post(
            dest_path("in-mem", name),
            json={"allowed_ipv6_addresses": ["2001:db8::/32"], "disable_strict_networking": True},
        )
    )
    cd = d["connection_details"]
    assert cd == {
        "allowed_ipv4_addresses": ["10.0.0.0/8", "192.168.1.0/24"],
        "allowed_ports": [443, 8443],
        "allowed_ipv6_addresses": ["2001:db8::/32"],
        "disable_strict_networking": True,
    }, cd
    no_content(delete_dest(api, "in-mem", name))


def test_list_destinations_grouped_and_sorted(api, hv):
    before = list_or_empty(api, "sys/sync/destinations")
    made = {}
    for kind in ["vercel-project", "gh", "in-mem", "aws-sm"]:
        names = sorted(unique(kind[:3]) for _ in range(2))
        for n in reversed(names):
            body = realistic(kind)[0] if kind != "in-mem" else {}
            create_dest(api, kind, n, body)
        made[kind] = names

    d = data(api.list("sys/sync/destinations"))
    assert set(d) == {"keys", "key_info", "total_destinations"}, d
    assert d["keys"] == sorted(d["keys"]), d["keys"]
    assert set(made) <= set(d["keys"]), d
    assert all(not k.endswith("/") for k in d["keys"]), d["keys"]  # bare type names, as in Vault's original sample
    assert set(d["keys"]) == set(d["key_info"]), d
    for kind, names in made.items():
        expected = set(before.get("key_info", {}).get(kind, [])) | set(names)
        assert set(d["key_info"][kind]) == expected, (kind, d["key_info"][kind])
        assert len(d["key_info"][kind]) == len(expected), d["key_info"][kind]
    assert d["total_destinations"] == sum(len(v) for v in d["key_info"].values()), d
    assert d["total_destinations"] == before.get("total_destinations", 0) + 8, d
    # GET ?list=true is the same operation
    d2 = data(api.get("sys/sync/destinations", params={"list": "true"}))
    assert d2 == d

    for kind, names in made.items():
        d = data(api.list(f"sys/sync/destinations/{kind}"))
        assert set(d) == {"keys", "total_destinations"}, d
        assert d["keys"] == sorted(d["keys"]), d
        assert set(names) <= set(d["keys"]), d
        assert d["total_destinations"] == len(d["keys"]), d
        assert data(api.get(f"sys/sync/destinations/{kind}", params={"list": "true"})) == d

    # hvac's generic list reads the same thing
    lst = hv.list("sys/sync/destinations")
    assert set(made["gh"]) <= set(lst["data"]["key_info"]["gh"]), lst
    lst = hv.list("sys/sync/destinations/in-mem")
    assert set(made["in-mem"]) <= set(lst["data"]["keys"]), lst

    for kind, names in made.items():
        for n in names:
            no_content(delete_dest(api, kind, n))


# --------------------------------------------------------------------------------------------
# updates: POST merge, PATCH, immutables
# --------------------------------------------------------------------------------------------


def test_post_on_existing_destination_merges(api):
    body, sensitive = realistic("aws-sm")
    name = unique("aws-merge")
    create_dest(api, "aws-sm", name, body)

    d = data(api.post(dest_path("aws-sm", name), json={"external_id": "ext-2"}))
    cd = d["connection_details"]
    assert cd["external_id"] == "ext-2"
    assert cd["role_arn"] == body["role_arn"] and cd["region"] == "us-east-1", cd
    assert cd["access_key_id"] == MASK and cd["secret_access_key"] == MASK, cd
    assert d["options"]["custom_tags"] == body["custom_tags"], d

    # a value of only `*` (a masked read echoed back) keeps the stored credential, other fields update
    r = api.post(
        dest_path("aws-sm", name),
        json={"access_key_id": MASK, "secret_access_key": "**", "role_arn": "arn:aws:iam::111122223333:role/other"},
    )
    d = data(r)
    cd = d["connection_details"]
    assert cd["role_arn"] == "arn:aws:iam::111122223333:role/other", cd
    assert cd["access_key_id"] == MASK and cd["secret_access_key"] == MASK, cd
    assert_no_stray_mask(d, {"/connection_details/access_key_id", "/connection_details/secret_access_key"})

    # custom_tags given on POST replace the whole map; tags_to_remove is ignored on POST
    d = data(api.post(dest_path("aws-sm", name), json={"custom_tags": {"cost-center": "42"}}))
    assert d["options"]["custom_tags"] == {"cost-center": "42"}, d
    d = data(api.post(dest_path("aws-sm", name), json={"tags_to_remove": ["cost-center"]}))
    assert d["options"]["custom_tags"] == {"cost-center": "42"}, d

    # a new credential replaces the old one and is masked too
    new_key = cred("AKIA")
    r = api.post(dest_path("aws-sm", name), json={"access_key_id": new_key})
    assert new_key not in r.text
    assert data(r)["connection_details"]["access_key_id"] == MASK

    assert read_dest(api, "aws-sm", name) == data(api.get(dest_path("aws-sm", name)))
    no_content(delete_dest(api, "aws-sm", name))


def test_patch_merges_tags_and_requires_merge_patch(api):
    body, _ = realistic("aws-sm")
    body["custom_tags"] = {"a": "1", "b": "2"}
    name = unique("aws-patch")
    create_dest(api, "aws-sm", name, body)

    r = api.merge_patch(dest_path("aws-sm", name), {"custom_tags": {"c": "3", "b": "20"}, "tags_to_remove": ["a"]})
    d = data(r)
    assert d["options"]["custom_tags"] == {"b": "20", "c": "3"}, d
    assert d["connection_details"]["external_id"] == body["external_id"], d
    assert d["connection_details"]["access_key_id"] == MASK, d
    assert read_dest(api, "aws-sm", name) == d

    r = api.merge_patch(dest_path("aws-sm", name), {"external_id": "ext-patched"})
    d = data(r)
    assert d["connection_details"]["external_id"] == "ext-patched"
    assert d["options"]["custom_tags"] == {"b": "20", "c": "3"}, d

    before = read_dest(api, "aws-sm", name)
    for ctype in ("application/json", None):
        headers = {"Content-Type": ctype} if ctype else {}
        r = api.request("PATCH", dest_path("aws-sm", name), data=json.dumps({"external_id": "x"}), headers=headers)
        error(r, 415, "merge-patch")
    assert read_dest(api, "aws-sm", name) == before

    # PATCH of a missing destination
    errors(api.merge_patch(dest_path("aws-sm", unique("missing")), {"external_id": "x"}), 404)
    no_content(delete_dest(api, "aws-sm", name))


IMMUTABLE = [
    ("aws-sm", "region", "us-west-2"),
    ("azure-kv", "key_vault_uri", "https://other.vault.azure.net"),
    ("azure-kv", "tenant_id", "99999999-4b5a-6978-8a9b-0c1d2e3f4a5b"),
    ("azure-kv", "cloud", "AzureChinaCloud"),
    ("gh", "repository_owner", "someone-else"),
    ("gh", "repository_name", "other-repo"),
    ("vercel-project", "project_id", "prj_other"),
    ("gh-org", "organization_visibility", "all"),
    ("gh-org", "selected_repository_names", ["other"]),
]


@pytest.mark.parametrize("kind,field,new", IMMUTABLE, ids=[f"{k}-{f}" for k, f, _ in IMMUTABLE])
def test_immutable_fields(api, kind, field, new):
    body, _ = realistic(kind)
    kind = kind.split("-org")[0]
    name = unique("imm")
    create_dest(api, kind, name, body)
    before = read_dest(api, kind, name)
    error(api.post(dest_path(kind, name), json={field: new}), 400, field)
    error(api.merge_patch(dest_path(kind, name), {field: new}), 400, field)
    assert read_dest(api, kind, name) == before
    # sending the same value is not a change
    d = data(api.post(dest_path(kind, name), json={field: body[field]}))
    assert d["connection_details"][field] == body[field]
    no_content(delete_dest(api, kind, name))


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def _vercel(**override):
    body = realistic("vercel-project")[0]
    body.update(override)
    return {k: v for k, v in body.items() if v is not None}


def _azure(**override):
    body = realistic("azure-kv")[0]
    body.update(override)
    return body


BAD = [
    ("granularity-int", "in-mem", lambda: {"granularity": 5}, "granularity"),
    ("granularity-value", "in-mem", lambda: {"granularity": "secret-file"}, "granularity"),
    ("ports-string", "in-mem", lambda: {"allowed_ports": "x"}, "allowed_ports"),
    ("port-range", "in-mem", lambda: {"allowed_ports": [443, 70000]}, "allowed_ports"),
    ("ipv4-cidr", "in-mem", lambda: {"allowed_ipv4_addresses": ["10.0.0.0/33"]}, "allowed_ipv4_addresses"),
    ("ipv6-cidr", "in-mem", lambda: {"allowed_ipv6_addresses": ["2001:db8::/129"]}, "allowed_ipv6_addresses"),
    ("strict-not-bool", "in-mem", lambda: {"disable_strict_networking": "maybe"}, "disable_strict_networking"),
    ("vercel-env", "vercel-project", lambda: _vercel(deployment_environments=["staging"]), "deployment_environments"),
    ("vercel-no-project", "vercel-project", lambda: _vercel(project_id=None), "project_id"),
    ("azure-ftp", "azure-kv", lambda: _azure(key_vault_uri="ftp://x"), "key_vault_uri"),
    (
        "gh-org-no-name",
        "gh",
        lambda: {"access_token": "t", "secrets_location": "organization", "organization_visibility": "all"},
        "organization_name",
    ),
    (
        "gh-selected-no-repos",
        "gh",
        lambda: {"access_token": "t", "secrets_location": "organization", "organization_name": "o",
                 "organization_visibility": "selected"},
        "selected_repository_names",
    ),
    (
        "gcp-kms-and-replicas",
        "gcp-sm",
        lambda: {"kms_key_id": "projects/p/locations/global/keyRings/r/cryptoKeys/k", "replica_regions": {"us-east1": ""}},
        "replica_regions",
    ),
    ("gcp-wif-no-email", "gcp-sm", lambda: {"identity_token_audience": "aud"}, "service_account_email"),
    (
        "aws-keys-and-wif",
        "aws-sm",
        lambda: {"access_key_id": "AKIAX", "secret_access_key": "s", "identity_token_audience": "aud",
                 "role_arn": "arn:aws:iam::111122223333:role/x"},
        "identity_token_audience",
    ),
    ("template-unknown-field", "in-mem", lambda: {"secret_name_template": "{{ .Nope }}"}, "template"),
    ("template-unparsable", "in-mem", lambda: {"secret_name_template": "{{ .SecretPath "}, "template"),
    (
        "template-key-needs-secretkey",
        "in-mem",
        lambda: {"granularity": "secret-key", "secret_name_template": "{{ .SecretPath }}"},
        "template",
    ),
    ("template-secretkey-with-path", "in-mem", lambda: {"secret_name_template": "{{ .SecretPath }}-{{ .SecretKey }}"}, "SecretKey"),
]


@pytest.mark.parametrize("case,kind,body,field", BAD, ids=[c[0] for c in BAD])
def test_bad_destination_input_is_400_and_nothing_is_stored(api, case, kind, body, field):
    name = unique("bad")
    r = api.post(dest_path(kind, name), json=body())
    error(r, 400, field)
    assert_no_creds_in(r.text)
    empty_404(api.get(dest_path(kind, name)))


def test_bad_update_leaves_destination_unchanged(api):
    name = in_mem(api, {"allowed_ports": [443]})
    before = read_dest(api, "in-mem", name)
    error(api.post(dest_path("in-mem", name), json={"allowed_ports": [70000], "granularity": "secret-key"}), 400, "allowed_ports")
    error(api.merge_patch(dest_path("in-mem", name), {"granularity": "bogus"}), 400, "granularity")
    # a custom secret-path template without .SecretKey cannot be switched to secret-key
    data(api.post(dest_path("in-mem", name), json={"secret_name_template": "x/{{ .SecretPath }}"}))
    before = read_dest(api, "in-mem", name)
    error(api.merge_patch(dest_path("in-mem", name), {"granularity": "secret-key"}), 400, "template")
    assert read_dest(api, "in-mem", name) == before
    no_content(delete_dest(api, "in-mem", name))


def test_unknown_destination_type_is_400(api):
    error(api.post("sys/sync/destinations/nope/x", json={}), 400, "type")
    error(api.post("sys/sync/destinations/gitlab/x", json={}), 400, "type")
    errors(api.list("sys/sync/destinations/nope"), {400, 404})
    errors(api.get("sys/sync/destinations/nope/x"), {400, 404})


@pytest.mark.parametrize("name", ["has space", "trailing.", "tab\tname"], ids=["space", "trailing-dot", "tab"])
def test_bad_destination_names(api, name):
    errors(api.post(dest_path("in-mem", name), json={}), 400)
    errors(api.get(dest_path("in-mem", name)), {400, 404})
    r = api.list("sys/sync/destinations/in-mem")
    if r.status_code == 200:
        assert name not in data(r)["keys"]


def test_unknown_fields_are_ignored_with_a_warning(api):
    name = unique("warn")
    body = ok(api.post(dest_path("in-mem", name), json={"bogus_field": 1}))
    assert body["warnings"] and any("bogus_field" in w for w in body["warnings"]), body["warnings"]
    assert "bogus_field" not in json.dumps(read_dest(api, "in-mem", name))
    no_content(delete_dest(api, "in-mem", name))

    name = unique("warn-az")
    b = _azure(subscription_id="11111111-2222-3333-4444-555555555555")
    body = ok(api.post(dest_path("azure-kv", name), json=b))
    assert body["warnings"] and any("subscription_id" in w for w in body["warnings"]), body["warnings"]
    assert "subscription_id" not in body["data"]["connection_details"]
    # without unknown fields: no warning
    body = ok(api.post(dest_path("azure-kv", name), json={"client_id": b["client_id"]}))
    assert body["warnings"] is None or body["warnings"] == [], body["warnings"]
    no_content(delete_dest(api, "azure-kv", name))

    # the interim name regional_kms_keys is not supported (replica_regions is): ignored, with a warning
    name = unique("warn-aws")
    body = ok(api.post(dest_path("aws-sm", name), json={"region": "us-east-1", "regional_kms_keys": {"us-west-2": ""}}))
    assert body["warnings"] and any("regional_kms_keys" in w for w in body["warnings"]), body["warnings"]
    assert "regional_kms_keys" not in json.dumps(body["data"])
    no_content(delete_dest(api, "aws-sm", name))


def test_field_coercion(api):
    """Vault's lenient field parser (strings for ints/bools, comma strings for lists,
    "k=v" arrays for maps, Go durations)."""
    name = unique("co-aws")
    d = create_dest(api, "aws-sm", name, {"region": "us-east-1", "custom_tags": ["team=payments", "env=prod"],
                                          "identity_token_ttl": "1h"})
    assert d["options"]["custom_tags"] == {"team": "payments", "env": "prod"}, d
    assert d["connection_details"]["identity_token_ttl"] == 3600, d
    no_content(delete_dest(api, "aws-sm", name))

    name = unique("co-vc")
    body = _vercel(deployment_environments="development, preview")
    d = create_dest(api, "vercel-project", name, body)
    assert sorted(d["connection_details"]["deployment_environments"]) == ["development", "preview"], d
    no_content(delete_dest(api, "vercel-project", name))

    name = unique("co-gh")
    d = create_dest(api, "gh", name, {"access_token": cred("ghp_"), "secrets_location": "organization",
                                      "organization_name": "acme", "organization_visibility": "selected",
                                      "selected_repository_names": "a, b,c"})
    assert d["connection_details"]["selected_repository_names"] == ["a", "b", "c"], d
    no_content(delete_dest(api, "gh", name))

    name = unique("co-im")
    d = create_dest(api, "in-mem", name, {"disable_strict_networking": "true", "allowed_ports": ["443"]})
    assert d["connection_details"] == {"disable_strict_networking": True, "allowed_ports": [443]}, d
    no_content(delete_dest(api, "in-mem", name))


def test_methods_tokens_and_put(api):
    name = unique("put")
    d = data(api.put(dest_path("in-mem", name), json={"granularity": "secret-key"}))  # PUT == POST
    assert d["options"]["granularity_level"] == "secret-key"
    # no token: permission denied everywhere under sys/sync
    for r in (
        api.get("sys/sync/config", token=None),
        api.list("sys/sync/destinations", token=None),
        api.get(dest_path("in-mem", name), token=None),
        api.post(dest_path("in-mem", name), json={}, token=None),
        api.get(f"{dest_path('in-mem', name)}/objects", token=None),
        api.list("sys/sync/associations", token=None),
        api.list("sys/sync/github-apps", token=None),
    ):
        assert error(r, 403) == ["permission denied"], r.text
    # operations a path does not support: 405
    errors(api.post(f"{dest_path('in-mem', name)}/associations", json={}), 405)
    errors(api.get(f"{dest_path('in-mem', name)}/associations/set"), 405)
    errors(api.delete("sys/sync/associations"), 405)
    errors(api.post(f"{dest_path('in-mem', name)}/objects", json={}), 405)
    # remove of an association that never existed succeeds, as in Vault
    d = data(remove_assoc(api, "in-mem", name, SECRET, unique("never")))
    assert d == {"associated_secrets": {}, "store_name": name, "store_type": "in-mem"}, d
    no_content(delete_dest(api, "in-mem", name))
    # deleting a missing destination is idempotent
    no_content(delete_dest(api, "in-mem", name))


# --------------------------------------------------------------------------------------------
# sync with in-mem: templates, granularity, statuses
# --------------------------------------------------------------------------------------------


def test_secret_path_value_is_json_of_the_data(api, acc):
    name = in_mem(api)
    path, payload = kv_secret(api, n=5, flag=True, nested={"a": [1, "two"]}, empty="")
    rows = synced(set_assoc(api, "in-mem", name, SECRET, path), f"{acc}/{path}")
    assert list(rows) == [f"{acc}/{path}"]
    assoc_entry_check(rows[f"{acc}/{path}"], accessor=acc, mount=SECRET, secret=path)
    objs = objects(api, name)
    assert list(objs) == [f"vault/{acc}/{path}"], objs
    assert json_value(objs[f"vault/{acc}/{path}"]["value"]) == payload
    purge(api, "in-mem", name)


def test_secret_key_granularity_one_object_per_key(api, acc):
    name = in_mem(api, {"granularity": "secret-key"})
    d = read_dest(api, "in-mem", name)
    assert d["options"] == {"granularity_level": "secret-key", "secret_name_template": TPL_KEY_AWS}, d
    s = kv_value("str")
    payload = {"s": s, "n": 5, "f": 1.5, "b": True, "list": [1, "two"], "obj": {"a": "b"}, "jsonish": '{"x": 1}'}
    path = unique("sk")
    write_kv(api, SECRET, path, payload)

    r = set_assoc(api, "in-mem", name, SECRET, path)
    rows = data(r)["associated_secrets"]
    assert set(rows) == {f"{acc}/{path}/{k}" for k in payload}, sorted(rows)
    for k in payload:
        e = rows[f"{acc}/{path}/{k}"]
        assoc_entry_check(e, accessor=acc, mount=SECRET, secret=path, sub_key=k)
        assert e["sync_status"] == "SYNCED", e
    assert read_assocs(api, "in-mem", name) == rows

    objs = objects(api, name)
    assert set(objs) == {f"vault/{acc}/{path}/{k}" for k in payload}, sorted(objs)
    for k, v in payload.items():
        value = objs[f"vault/{acc}/{path}/{k}"]["value"]
        if isinstance(v, str):
            assert value == v, (k, value)  # strings verbatim, even JSON-looking ones
        else:
            assert json_value(value) == v, (k, value)
    assert objs[f"vault/{acc}/{path}/n"]["value"] == "5"
    assert objs[f"vault/{acc}/{path}/b"]["value"] == "true"

    # destinations of the secret: one entry for the destination (sub-key rows aggregated)
    d = data(api.get(f"sys/sync/associations/{SECRET}/{path}"))
    assert list(d["associated_destinations"]) == [f"in-mem/{name}"], d
    assert d["associated_destinations"][f"in-mem/{name}"]["sync_status"] == "SYNCED", d

    # a key removed from the secret: `set` again deletes that key's object
    del payload["b"], payload["obj"]
    write_kv(api, SECRET, path, payload)
    rows = synced(set_assoc(api, "in-mem", name, SECRET, path), f"{acc}/{path}/s")
    synced_keys = {e["sub_key"] for e in rows.values() if e["sync_status"] == "SYNCED"}
    assert synced_keys == set(payload), rows
    objs = objects(api, name)
    assert set(objs) == {f"vault/{acc}/{path}/{k}" for k in payload}, sorted(objs)
    assert objs[f"vault/{acc}/{path}/s"]["value"] == s
    purge(api, "in-mem", name)


def test_custom_templates(api, acc):
    tpl = '{{ .SecretPath | replace "/" "_" | uppercase }}'
    name = in_mem(api, {"secret_name_template": tpl})
    assert read_dest(api, "in-mem", name)["options"]["secret_name_template"] == tpl
    leaf = unique("cfg")
    path, payload = kv_secret(api, f"app/{leaf}/db")
    synced(set_assoc(api, "in-mem", name, SECRET, path), f"{acc}/{path}")
    objs = objects(api, name)
    ext = f"APP_{leaf.upper()}_DB"
    assert list(objs) == [ext], objs
    assert json_value(objs[ext]["value"]) == payload

    # the other placeholders of the name template
    tpl2 = "{{ .DestinationType }}/{{ .DestinationName }}/{{ .MountBaseName }}/{{ .SecretBaseName }}"
    name2 = in_mem(api, {"secret_name_template": tpl2})
    synced(set_assoc(api, "in-mem", name2, SECRET, path), f"{acc}/{path}")
    assert list(objects(api, name2)) == [f"in-mem/{name2}/{SECRET}/db"]

    # secret-key with a custom template that references .SecretKey
    tpl3 = "{{ .SecretBaseName }}-{{ .SecretKey | lowercase }}"
    name3 = in_mem(api, {"granularity": "secret-key", "secret_name_template": tpl3})
    path3 = f"{unique('k')}/svc"
    write_kv(api, SECRET, path3, {"API_KEY": (v1 := kv_value("k1")), "Token": (v2 := kv_value("k2"))})
    synced(set_assoc(api, "in-mem", name3, SECRET, path3), f"{acc}/{path3}/API_KEY")
    objs = objects(api, name3)
    assert {k: o["value"] for k, o in objs.items()} == {"svc-api_key": v1, "svc-token": v2}, objs

    for n in (name, name2, name3):
        purge(api, "in-mem", n)


def test_changing_template_and_granularity_applies_on_next_set(api, acc):
    name = in_mem(api)
    path, payload = kv_secret(api)
    synced(set_assoc(api, "in-mem", name, SECRET, path), f"{acc}/{path}")
    old = f"vault/{acc}/{path}"
    assert list(objects(api, name)) == [old]

    d = data(api.post(dest_path("in-mem", name), json={"secret_name_template": "moved/{{ .SecretPath }}"}))
    assert d["options"]["secret_name_template"] == "moved/{{ .SecretPath }}"
    # existing external objects keep their name until the association is set again
    assert list(objects(api, name)) == [old]
    synced(set_assoc(api, "in-mem", name, SECRET, path), f"{acc}/{path}")
    objs = objects(api, name)
    assert list(objs) == [f"moved/{path}"], objs
    assert json_value(objs[f"moved/{path}"]["value"]) == payload

    # secret-path -> secret-key: the JSON object is replaced by one object per key
    data(
        api.post(
            dest_path("in-mem", name),
            json={"granularity": "secret-key", "secret_name_template": "moved/{{ .SecretPath }}/{{ .SecretKey }}"},
        )
    )
    rows = synced(set_assoc(api, "in-mem", name, SECRET, path), f"{acc}/{path}/user")
    assert {k for k, e in rows.items() if e["sync_status"] == "SYNCED"} == {f"{acc}/{path}/{k}" for k in payload}, rows
    objs = objects(api, name)
    assert {k: o["value"] for k, o in objs.items()} == {f"moved/{path}/{k}": v for k, v in payload.items()}, objs
    purge(api, "in-mem", name)


def test_association_of_a_missing_secret_is_unsynced_until_written(api, acc):
    name = in_mem(api)
    path = unique("later")
    d = data(set_assoc(api, "in-mem", name, SECRET, path))
    rows = d["associated_secrets"]
    assert list(rows) == [f"{acc}/{path}"], rows
    assoc_entry_check(rows[f"{acc}/{path}"], accessor=acc, mount=SECRET, secret=path)
    assert rows[f"{acc}/{path}"]["sync_status"] == "UNSYNCED", rows
    assert objects(api, name) == {}
    d = data(api.get("sys/sync/associations/destinations", params={"mount": SECRET, "secret_name": path}))
    assert d["associated_destinations"][f"in-mem/{name}"]["sync_status"] == "UNSYNCED", d

    path, payload = kv_secret(api, path)
    synced(set_assoc(api, "in-mem", name, SECRET, path), f"{acc}/{path}")
    objs = objects(api, name)
    assert list(objs) == [f"vault/{acc}/{path}"]
    assert json_value(objs[f"vault/{acc}/{path}"]["value"]) == payload
    purge(api, "in-mem", name)


def test_secret_key_missing_secret_then_keys_then_remove(api, acc):
    before = list_or_empty(api, "sys/sync/associations")
    name = in_mem(api, {"granularity": "secret-key"})
    path = unique("later-sk")
    rows = data(set_assoc(api, "in-mem", name, SECRET, path))["associated_secrets"]
    assert rows and all(e["sync_status"] == "UNSYNCED" for e in rows.values()), rows
    assert objects(api, name) == {}

    write_kv(api, SECRET, path, {"x": (x := kv_value("x")), "y": (y := kv_value("y"))})
    rows = synced(set_assoc(api, "in-mem", name, SECRET, path), f"{acc}/{path}/x")
    assert set(rows) == {f"{acc}/{path}/x", f"{acc}/{path}/y"}, rows  # no left-over placeholder row
    assert {k: o["value"] for k, o in objects(api, name).items()} == {
        f"vault/{acc}/{path}/x": x,
        f"vault/{acc}/{path}/y": y,
    }
    # one association, however many sub-key rows
    d = data(api.list("sys/sync/associations"))
    assert d["total_associations"] == before.get("total_associations", 0) + 1, d
    assert d["total_secrets"] == before.get("total_secrets", 0) + 1, d

    d = data(remove_assoc(api, "in-mem", name, SECRET, path))
    assert all(e["sync_status"] == "UNSYNCED" for e in d["associated_secrets"].values()), d
    assert objects(api, name) == {}
    purge(api, "in-mem", name)


def test_keys_of_one_secret_colliding_on_one_name_are_refused(api, acc):
    name = in_mem(api, {"granularity": "secret-key", "secret_name_template": "{{ .SecretKey | lowercase }}"})
    path = unique("case")
    write_kv(api, SECRET, path, {"A": kv_value("A"), "a": kv_value("a")})
    error(set_assoc(api, "in-mem", name, SECRET, path), 400)
    assert objects(api, name) == {}
    assert read_assocs(api, "in-mem", name) == {}
    no_content(delete_dest(api, "in-mem", name))


def test_deleted_latest_version_unsyncs_on_set(api, acc):
    """A soft-deleted latest version is not readable, so the association is UNSYNCED and
    the external object deleted; the association is kept and a later write syncs again."""
    name = in_mem(api)
    path, _ = kv_secret(api)
    synced(set_assoc(api, "in-mem", name, SECRET, path), f"{acc}/{path}")
    no_content(api.delete(f"{SECRET}/data/{path}"))
    rows = data(set_assoc(api, "in-mem", name, SECRET, path))["associated_secrets"]
    assert rows[f"{acc}/{path}"]["sync_status"] == "UNSYNCED", rows
    assert objects(api, name) == {}
    _, payload = kv_secret(api, path)
    synced(set_assoc(api, "in-mem", name, SECRET, path), f"{acc}/{path}")
    assert json_value(objects(api, name)[f"vault/{acc}/{path}"]["value"]) == payload
    purge(api, "in-mem", name)


def test_disabling_a_mount_unsyncs_and_drops_its_associations(api):
    """Disabling a mount unsyncs and drops its associations. Bounded wait (5 s) in case
    it is done in the background."""
    mount = new_kv2_mount(api, "kvgone")
    macc = mount_accessor(api, mount)
    name = in_mem(api)
    keep, _ = kv_secret(api)
    keep_acc = mount_accessor(api, SECRET)
    write_kv(api, mount, "app", {"k": kv_value("gone")})
    synced(set_assoc(api, "in-mem", name, mount, "app"), f"{macc}/app")
    synced(set_assoc(api, "in-mem", name, SECRET, keep), f"{keep_acc}/{keep}")
    no_content(api.delete(f"sys/mounts/{mount}"))
    try:
        deadline = time.monotonic() + 5
        while True:
            rows, objs = read_assocs(api, "in-mem", name), objects(api, name)
            if list(rows) == [f"{keep_acc}/{keep}"] and list(objs) == [f"vault/{keep_acc}/{keep}"]:
                break
            assert time.monotonic() < deadline, (
                f"5 s after disabling {mount}: associations {rows}, external objects {sorted(objs)}, "
                f"LIST sys/sync/associations {list_or_empty(api, 'sys/sync/associations')}"
            )
            time.sleep(0.1)
        d = data(api.list("sys/sync/associations"))
        assert not any(k.startswith(f"{mount}/") for k in d["keys"]), d
        d = data(api.get(f"sys/sync/associations/{SECRET}/{keep}"))
        assert list(d["associated_destinations"]) == [f"in-mem/{name}"], d
    finally:
        no_content(delete_dest(api, "in-mem", name, force_delete=True))


def test_two_associations_with_the_same_external_name_are_refused(api, acc):
    name = in_mem(api, {"secret_name_template": "shared-{{ .MountAccessor }}"})
    p1, v1 = kv_secret(api)
    p2, _ = kv_secret(api)
    synced(set_assoc(api, "in-mem", name, SECRET, p1), f"{acc}/{p1}")
    error(set_assoc(api, "in-mem", name, SECRET, p2), 400)
    assert list(read_assocs(api, "in-mem", name)) == [f"{acc}/{p1}"]
    objs = objects(api, name)
    assert list(objs) == [f"shared-{acc}"], objs
    assert json_value(objs[f"shared-{acc}"]["value"]) == v1
    # re-setting the same association is a refresh, not a collision
    synced(set_assoc(api, "in-mem", name, SECRET, p1), f"{acc}/{p1}")
    # the same name on another destination does not collide
    other = in_mem(api, {"secret_name_template": "shared-{{ .MountAccessor }}"})
    synced(set_assoc(api, "in-mem", other, SECRET, p2), f"{acc}/{p2}")

    # secret-key: two secrets with the same key under a template without .SecretPath
    kname = in_mem(api, {"granularity": "secret-key", "secret_name_template": "k-{{ .SecretKey }}"})
    synced(set_assoc(api, "in-mem", kname, SECRET, p1), f"{acc}/{p1}/user")
    error(set_assoc(api, "in-mem", kname, SECRET, p2), 400)
    assert {e["secret_name"] for e in read_assocs(api, "in-mem", kname).values()} == {p1}
    assert set(objects(api, kname)) == {"k-user", "k-password"}
    for n in (name, other, kname):
        purge(api, "in-mem", n)


def test_association_lists_and_destinations_of_a_secret(api, acc):
    before = list_or_empty(api, "sys/sync/associations")
    d1, d2 = in_mem(api), in_mem(api)
    s1, _ = kv_secret(api, f"{unique('dir')}/s1")
    s2, _ = kv_secret(api)
    synced(set_assoc(api, "in-mem", d1, SECRET, s1), f"{acc}/{s1}")
    rows = synced(set_assoc(api, "in-mem", d1, SECRET, s2), f"{acc}/{s2}")
    # the answer carries every association of the destination
    assert set(rows) == {f"{acc}/{s1}", f"{acc}/{s2}"}, rows
    synced(set_assoc(api, "in-mem", d2, SECRET, s1), f"{acc}/{s1}")

    d = data(api.list("sys/sync/associations"))
    assert set(d) == {"keys", "key_info", "total_associations", "total_secrets"}, d
    for s in (s1, s2):
        assert f"{SECRET}/{s}" in d["keys"], d
        assert d["key_info"][f"{SECRET}/{s}"] == [{"mount": f"{SECRET}/", "secret_path": s}], d
    assert set(d["keys"]) == set(d["key_info"]), d
    assert sorted(d["keys"]) == sorted(before.get("keys", []) + [f"{SECRET}/{s1}", f"{SECRET}/{s2}"]), d
    assert d["total_associations"] == before.get("total_associations", 0) + 3, d
    assert d["total_secrets"] == before.get("total_secrets", 0) + 2, d
    assert data(api.get("sys/sync/associations", params={"list": "true"})) == d

    for s, dests in ((s1, {d1, d2}), (s2, {d1})):
        for r in (
            api.get("sys/sync/associations/destinations", params={"mount": SECRET, "secret_name": s}),
            api.get(f"sys/sync/associations/{SECRET}/{s}"),
        ):
            got = data(r)
            assert list(got) == ["associated_destinations"], got
            assert set(got["associated_destinations"]) == {f"in-mem/{n}" for n in dests}, got
            for key, e in got["associated_destinations"].items():
                assert set(e) == {"type", "name", "sync_status", "updated_at"}, e
                assert f"{e['type']}/{e['name']}" == key and e["sync_status"] == "SYNCED", e
                assert_updated_at(e["updated_at"])

    # none -> 200 with an empty `associated_destinations` map, both forms
    s3, _ = kv_secret(api)
    for r in (
        api.get("sys/sync/associations/destinations", params={"mount": SECRET, "secret_name": s3}),
        api.get(f"sys/sync/associations/{SECRET}/{s3}"),
    ):
        assert data(r) == {"associated_destinations": {}}

    # remove one link: totals follow
    data(remove_assoc(api, "in-mem", d2, SECRET, s1))
    got = data(api.get(f"sys/sync/associations/{SECRET}/{s1}"))["associated_destinations"]
    assert got[f"in-mem/{d1}"]["sync_status"] == "SYNCED", got
    assert got.get(f"in-mem/{d2}", {"sync_status": "UNSYNCED"})["sync_status"] == "UNSYNCED", got
    if f"in-mem/{d2}" not in got:  # dropped rather than kept as UNSYNCED
        d = data(api.list("sys/sync/associations"))
        assert d["total_associations"] == before.get("total_associations", 0) + 2, d
        assert d["total_secrets"] == before.get("total_secrets", 0) + 2, d
    for n in (d1, d2):
        purge(api, "in-mem", n)


def test_association_bad_input(api, acc):
    name = in_mem(api)
    path, _ = kv_secret(api)
    p = dest_path("in-mem", name) + "/associations/set"
    error(api.post(p, json={"secret_name": path}), 400, "mount")
    error(api.post(p, json={"mount": SECRET}), 400, "secret_name")
    error(api.post(p, json={"mount": SECRET, "secret_name": ""}), 400, "secret_name")
    errors(api.post(p, json={"mount": SECRET, "secret_name": "dir/"}), 400)
    nomount = unique("nomount")
    error(api.post(p, json={"mount": nomount, "secret_name": path}), 400, nomount)
    errors(api.post(p, json={"mount": "sys", "secret_name": path}), 400)
    errors(api.post(p, json={"mount": "cubbyhole", "secret_name": path}), 400)
    errors(api.post(dest_path("in-mem", name) + "/associations/remove", json={"secret_name": path}), 400)
    assert read_assocs(api, "in-mem", name) == {}
    assert objects(api, name) == {}

    missing = unique("missing")
    errors(set_assoc(api, "in-mem", missing, SECRET, path), {400, 404})
    empty_404(api.get(dest_path("in-mem", missing)))
    errors(api.get(dest_path("in-mem", missing) + "/associations"), {400, 404})
    no_content(delete_dest(api, "in-mem", name))


def test_association_to_a_mount_that_is_not_kv2_says_so(api):
    """`sys/` is listed by sys/mounts (type system): refusing it as a source is right (only KV-v2 mounts
    are sources), but the message must say what is wrong, not that the mount does not exist."""
    mounts = api.get("sys/mounts").json()["data"]
    non_kv = sorted(m for m, v in mounts.items() if v.get("type") != "kv")
    assert non_kv, mounts
    name = in_mem(api)
    path, _ = kv_secret(api)
    for m in non_kv:
        errs = error(set_assoc(api, "in-mem", name, m.rstrip("/"), path), 400, "kv")
        assert "does not exist" not in " ".join(errs), f"mount {m} (type {mounts[m]['type']}) exists: {errs}"
    no_content(delete_dest(api, "in-mem", name))


def test_workload_identity_fails_with_client_side_error(api, acc):
    """Workload identity federation fields are stored, and a sync that needs them fails with
    CLIENT_SIDE_ERROR ("workload identity federation is not supported") before any provider call (no network: the test must not reach AWS)."""
    body = {"region": "us-east-1", "role_arn": "arn:aws:iam::123456789012:role/kvsync-sync",
            "identity_token_audience": cred("aud")}
    name = unique("aws-assoc")
    create_dest(api, "aws-sm", name, body)
    path, _ = kv_secret(api)
    r = set_assoc(api, "aws-sm", name, SECRET, path)
    assert_no_creds_in(r.text)
    for v in Sent.kv_values:
        assert v not in r.text
    e = data(r)["associated_secrets"][f"{acc}/{path}"]
    assoc_entry_check(e, accessor=acc, mount=SECRET, secret=path)
    assert e["sync_status"] == "CLIENT_SIDE_ERROR", e
    assert "workload identity federation is not supported" in e["error"], e  # workload identity federation: accepted, fails at sync
    d = data(api.get(f"sys/sync/associations/{SECRET}/{path}"))
    assert d["associated_destinations"][f"aws-sm/{name}"]["sync_status"] in ERROR_STATUSES, d

    error(delete_dest(api, "aws-sm", name), 400, "association")
    no_content(delete_dest(api, "aws-sm", name, force_delete=True))
    empty_404(api.get(dest_path("aws-sm", name)))
    assert data(api.get(f"sys/sync/associations/{SECRET}/{path}")) == {"associated_destinations": {}}


# --------------------------------------------------------------------------------------------
# delete: purge / force_delete
# --------------------------------------------------------------------------------------------


def test_delete_with_associations_purge_and_force(api, acc):
    """in-mem keeps its objects in memory by destination name, independent of the destination
    record. purge: the objects are deleted (a destination recreated with the same name starts
    empty). force_delete: the objects are orphaned (a destination recreated with the same name
    shows them again, without any association)."""
    pname, fname = in_mem(api), in_mem(api)
    s1, v1 = kv_secret(api)
    s2, v2 = kv_secret(api)
    synced(set_assoc(api, "in-mem", pname, SECRET, s1), f"{acc}/{s1}")
    synced(set_assoc(api, "in-mem", fname, SECRET, s2), f"{acc}/{s2}")

    for n in (pname, fname):
        error(delete_dest(api, "in-mem", n), 400, "association")
        error(delete_dest(api, "in-mem", n, purge=False, force_delete=False), 400, "association")
        assert read_dest(api, "in-mem", n)["name"] == n
        assert len(objects(api, n)) == 1

    # purge
    r = delete_dest(api, "in-mem", pname, purge=True)
    no_content(r)
    wait_gone(api, "in-mem", pname)
    errors(api.get(f"sys/sync/destinations/in-mem/{pname}/objects"), 404)
    assert data(api.get(f"sys/sync/associations/{SECRET}/{s1}")) == {"associated_destinations": {}}
    in_mem(api, name=pname)
    assert objects(api, pname) == {}, "purge left the external objects behind"
    assert read_assocs(api, "in-mem", pname) == {}

    # force_delete: immediate, associations dropped, external objects orphaned
    no_content(delete_dest(api, "in-mem", fname, force_delete=True))
    empty_404(api.get(dest_path("in-mem", fname)))
    assert data(api.get(f"sys/sync/associations/{SECRET}/{s2}")) == {"associated_destinations": {}}
    r = api.list("sys/sync/associations")
    if r.status_code == 200:
        assert f"{SECRET}/{s2}" not in data(r)["keys"]
    in_mem(api, name=fname)
    assert read_assocs(api, "in-mem", fname) == {}
    objs = objects(api, fname)
    assert list(objs) == [f"vault/{acc}/{s2}"], objs
    assert json_value(objs[f"vault/{acc}/{s2}"]["value"]) == v2

    for n in (pname, fname):
        no_content(delete_dest(api, "in-mem", n))


# --------------------------------------------------------------------------------------------
# sys/sync/config
# --------------------------------------------------------------------------------------------


def test_sync_config(api):
    try:
        assert data(api.get("sys/sync/config")) == DEFAULT_CONFIG
        # PATCH needs the merge-patch content type
        r = api.request("PATCH", "sys/sync/config", data=json.dumps({"disabled": True}),
                        headers={"Content-Type": "application/json"})
        error(r, 415, "merge-patch")
        assert data(api.get("sys/sync/config")) == DEFAULT_CONFIG
        # merge-patch updates, with Vault's lenient field parsing
        assert data(api.merge_patch("sys/sync/config", {"disabled": True})) == {"disabled": True, "queue_capacity": 1000000}
        assert data(api.get("sys/sync/config")) == {"disabled": True, "queue_capacity": 1000000}
        assert data(api.merge_patch("sys/sync/config", {"queue_capacity": "500"})) == {"disabled": True, "queue_capacity": 500}
        assert data(api.merge_patch("sys/sync/config", {"disabled": "false"})) == {"disabled": False, "queue_capacity": 500}
        error(api.merge_patch("sys/sync/config", {"queue_capacity": "lots"}), 400, "queue_capacity")
        assert data(api.get("sys/sync/config")) == {"disabled": False, "queue_capacity": 500}
        assert data(api.delete("sys/sync/config")) == DEFAULT_CONFIG
        assert data(api.get("sys/sync/config")) == DEFAULT_CONFIG
    finally:
        api.delete("sys/sync/config")


def test_disabled_sync_queues_as_pending(api, acc):
    """`sys/sync/config`: while `disabled` is true, operations that would sync are queued, not sent, and
    their associations show PENDING. The automatic drain after re-enabling needs the background
    worker (covered in test_durable_sync.py): the test refreshes with `set` instead."""
    name = in_mem(api)
    path, payload = kv_secret(api)
    key = f"{acc}/{path}"
    try:
        assert data(api.merge_patch("sys/sync/config", {"disabled": True}))["disabled"] is True
        rows = data(set_assoc(api, "in-mem", name, SECRET, path))["associated_secrets"]
        objs = objects(api, name)
        assert (rows[key]["sync_status"], objs) == ("PENDING", {}), (
            f"set while sync is disabled: status {rows[key]['sync_status']}, external objects {sorted(objs)}"
        )
    finally:
        assert data(api.delete("sys/sync/config")) == DEFAULT_CONFIG
    synced(set_assoc(api, "in-mem", name, SECRET, path), key)
    objs = objects(api, name)
    assert json_value(objs[f"vault/{acc}/{path}"]["value"]) == payload
    purge(api, "in-mem", name)


# --------------------------------------------------------------------------------------------
# GitHub Apps
# --------------------------------------------------------------------------------------------


def test_github_apps(api, tmp_path):
    if not have_openssl():
        pytest.skip("openssl is not installed")
    pem = gen_rsa_pem(tmp_path)
    Sent.credentials.update(pem_body_lines(pem))
    fingerprint = github_fingerprint(pem)
    assert re.match(r"^SHA256:[A-Za-z0-9+/]{43}=$", fingerprint), fingerprint

    app = unique("app")
    r = api.post(f"sys/sync/github-apps/{app}", json={"app_id": "123", "private_key": pem})
    assert_no_creds_in(r.text)
    expected = {"name": app, "app_id": 123, "private_key": MASK, "fingerprint": fingerprint}
    assert data(r) == expected
    r = api.get(f"sys/sync/github-apps/{app}")
    assert_no_creds_in(r.text)
    assert data(r) == expected
    d = data(api.list("sys/sync/github-apps"))
    assert app in d["keys"] and d["keys"] == sorted(d["keys"]), d
    assert data(api.get("sys/sync/github-apps", params={"list": "true"})) == d

    # bad input, nothing stored
    for body, field in (
        ({"app_id": "abc", "private_key": pem}, "app_id"),
        ({"app_id": 7}, "private_key"),
        ({"app_id": 7, "private_key": "not a pem"}, "private_key"),
    ):
        bad = unique("badapp")
        r = api.post(f"sys/sync/github-apps/{bad}", json=body)
        error(r, 400, field)
        assert_no_creds_in(r.text)
        empty_404(api.get(f"sys/sync/github-apps/{bad}"))

    # gh destination with an unregistered app -> 400
    ghbody = {"repository_owner": "kvsync", "repository_name": "demo", "installation_id": 42}
    nope = unique("noapp")
    gname = unique("gh-app")
    errs = errors(api.post(dest_path("gh", gname), json=dict(ghbody, app_name=nope)), 400)
    assert any(nope in e or "app_name" in e for e in errs), errs
    empty_404(api.get(dest_path("gh", gname)))

    # with the registered app
    d = create_dest(api, "gh", gname, dict(ghbody, app_name=app))
    assert d["connection_details"]["app_config"] == {"app_name": app}, d  # github.mdx output
    assert d["connection_details"]["installation_id"] == 42, d
    assert "access_token" not in d["connection_details"], d
    assert_no_creds_in(json.dumps(d))

    # the app cannot be deleted while a destination references it
    errs = error(api.delete(f"sys/sync/github-apps/{app}"), 400)
    assert data(api.get(f"sys/sync/github-apps/{app}")) == expected

    no_content(delete_dest(api, "gh", gname))
    no_content(api.delete(f"sys/sync/github-apps/{app}"))
    empty_404(api.get(f"sys/sync/github-apps/{app}"))
    r = api.list("sys/sync/github-apps")
    if r.status_code == 200:
        assert app not in data(r)["keys"]
    else:
        empty_404(r)


# --------------------------------------------------------------------------------------------
# a client that is not ours
# --------------------------------------------------------------------------------------------


def test_hvac_generic_methods(hv, acc):
    name = unique("hv")
    resp = hv.write_data(f"sys/sync/destinations/in-mem/{name}", data={"granularity": "secret-key"})
    assert resp["data"]["options"]["granularity_level"] == "secret-key", resp
    assert resp["mount_type"] == "system"

    path = unique("hvs")
    val = kv_value("hv")
    hv.secrets.kv.v2.create_or_update_secret(path, secret={"token": val}, mount_point=SECRET)
    resp = hv.adapter.post(
        f"/v1/sys/sync/destinations/in-mem/{name}/associations/set", json={"mount": SECRET, "secret_name": path}
    )
    assert resp["data"]["associated_secrets"][f"{acc}/{path}/token"]["sync_status"] == "SYNCED", resp

    resp = hv.read(f"sys/sync/destinations/in-mem/{name}/associations")
    assert resp["data"]["store_name"] == name
    assert list(resp["data"]["associated_secrets"]) == [f"{acc}/{path}/token"], resp
    resp = hv.read(f"sys/sync/destinations/in-mem/{name}/objects")
    assert resp["data"]["objects"][f"vault/{acc}/{path}/token"]["value"] == val

    resp = hv.list("sys/sync/destinations")
    assert name in resp["data"]["key_info"]["in-mem"], resp
    resp = hv.adapter.get("/v1/sys/sync/associations/destinations", params={"mount": SECRET, "secret_name": path})
    assert resp["data"]["associated_destinations"][f"in-mem/{name}"]["sync_status"] == "SYNCED"

    # errors surface as hvac exceptions with the server's message
    with pytest.raises(hexc.InvalidRequest) as ei:
        hv.write_data(f"sys/sync/destinations/in-mem/{unique('hvbad')}", data={"granularity": "sideways"})
    assert "granularity" in str(ei.value)
    with pytest.raises(hexc.InvalidRequest):
        hv.adapter.delete(f"/v1/sys/sync/destinations/in-mem/{name}")
    assert hv.read(f"sys/sync/destinations/in-mem/{unique('hvnone')}") is None

    resp = hv.adapter.delete(f"/v1/sys/sync/destinations/in-mem/{name}", params={"purge": "true"})
    assert resp.status_code == 204, resp
    deadline = time.monotonic() + 10
    while hv.read(f"sys/sync/destinations/in-mem/{name}") is not None:
        assert time.monotonic() < deadline
        time.sleep(0.1)


# --------------------------------------------------------------------------------------------
# secrets never leak (last)
# --------------------------------------------------------------------------------------------

def test_zz_no_secret_leaks(api, dev_server, acc):
    # own traffic, so that this test can fail on its own: every credentialed type, reads, lists,
    # updates, an association with a KV value to a connector that fails.
    made = []
    for kind in ("aws-sm", "azure-kv", "gcp-sm", "gh", "vercel-project"):
        body, _ = realistic(kind)
        # Syncs below must never reach (or resolve) a real provider: every address is a closed
        # loopback port, which strict egress refuses before connecting.
        if kind == "gh":
            body["enterprise_url"] = "https://127.0.0.1:9"
        if kind == "azure-kv":
            body["key_vault_uri"] = "https://127.0.0.1:9"
        if kind == "gcp-sm":
            sa = json.loads(body["credentials"])
            sa["token_uri"] = "https://127.0.0.1:9/token"
            body["credentials"] = json.dumps(sa)
        n = unique("leak")
        create_dest(api, kind, n, body)
        made.append((kind, n))
        read_dest(api, kind, n)
        granularity, tpl_path, tpl_key = DEFAULT_TEMPLATES[kind]
        data(api.merge_patch(dest_path(kind, n), {"secret_name_template": tpl_key if granularity == "secret-key" else tpl_path}))
    data(api.list("sys/sync/destinations"))
    path, _ = kv_secret(api)
    for kind, n in made:
        data(set_assoc(api, kind, n, SECRET, path))
        read_assocs(api, kind, n)
    data(api.get(f"sys/sync/associations/{SECRET}/{path}"))
    data(api.list("sys/sync/associations"))
    for kind, n in made:
        no_content(delete_dest(api, kind, n, force_delete=True))

    # the scanner itself finds what it must find
    probe_c, probe_v = next(iter(Sent.credentials)), next(iter(Sent.kv_values))
    fake = [("GET", "http://x/v1/sys/sync/destinations/aws-sm/a", 200, f"..{probe_c}.."),
            ("GET", "http://x/v1/sys/sync/associations", 200, f"..{probe_v}.."),
            ("GET", "http://x/v1/secret/data/a", 200, f"..{probe_v}.."),
            ("GET", "http://x/v1/sys/sync/destinations/in-mem/a/objects", 200, f"..{probe_v}..")]
    assert len(leaks_in(fake)) == 2, leaks_in(fake)

    assert Sent.credentials and Sent.kv_values
    assert len(Recorded.responses) > 20, len(Recorded.responses)
    hits = leaks_in(Recorded.responses)
    assert not hits, "\n".join(hits[:30])

    time.sleep(0.2)  # let the server flush its log lines
    out = dev_server.server.stdout_path.read_bytes()
    assert f"Api Address: {dev_server.addr}".encode() in out, "not this server's log"
    for stream, content in (("stdout", out), ("stderr", dev_server.server.stderr_path.read_bytes())):
        for needle in sorted(Sent.credentials | Sent.kv_values):
            for variant in marker_variants(needle.encode()):
                assert variant not in content, f"{needle[:10]}... ({variant[:20]!r}) found in the server's {stream}"


KV_READ_RE = re.compile(r"^/v1/(?!sys/)[^/]+/data/")
OBJECTS_RE = re.compile(r"^/v1/sys/sync/destinations/in-mem/[^/]+/objects$")


def leaks_in(responses) -> list:
    """Credentials anywhere; KV values anywhere but KV data reads and the in-mem objects endpoint."""
    hits = []
    for method, url, status, text in responses:
        upath = urlsplit(url).path
        for c in Sent.credentials:
            if c in text:
                hits.append(f"credential {c[:10]}... in {method} {upath} ({status})")
        if method == "GET" and (KV_READ_RE.match(upath) or OBJECTS_RE.match(upath)):
            continue
        for v in Sent.kv_values:
            if v in text:
                hits.append(f"KV value {v} in {method} {upath} ({status})")
    return hits
