"""Studio releases and the Studio Maven repository, over real HTTP, and a real `mvn`."""

from __future__ import annotations

import hashlib
import io
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.git import GitUser
from tests.support.maven import dependency_get, write_settings

PASSWORD = "studio person's password"
GROUP = "com.acme.studio"


@pytest.fixture(scope="module")
def studio(server, tmp_path_factory) -> dict:
    """A project with content on master: alice writes, bob reads, carol is not a member."""
    suffix = uuid.uuid4().hex[:6]
    names = {role: f"{role}-{suffix}" for role in ("alice", "bob", "carol")}
    for name in names.values():
        server.create_user(name, password=PASSWORD)
    project_id = f"acme-contracts-{suffix}"
    server.create_project(project_id, GROUP, owner=names["alice"], members={names["bob"]: "read"})
    tokens = {role: server.create_token(name, "studio") for role, name in names.items()}
    alice = GitUser(tmp_path_factory.mktemp("alice"), names["alice"], tokens["alice"])
    alice.remember_credentials(server.base_url)
    work = alice.home / "work"
    alice.git("clone", f"{server.base_url}/git/{project_id}.git", str(work))
    (work / "OSGI-INF").mkdir()
    (work / "OSGI-INF" / "extensions.xml").write_text("<component name='acme'/>\n")
    (work / "README.md").write_text("# ACME contracts\n")
    alice.git("add", ".", cwd=work)
    alice.git("commit", "-m", "first", cwd=work)
    alice.git("push", "origin", "HEAD:master", cwd=work)
    return {"id": project_id, "names": names, "tokens": tokens}


def release(server, studio, version_name, who="alice", revision="master", **kwargs) -> httpx.Response:
    with server.client(auth=(studio["names"][who], studio["tokens"][who])) as client:
        return client.post(
            f"/studio/v2/project/{studio['id']}/releases",
            json={"revision": revision, "versionName": version_name},
            **kwargs,
        )


def get(server, studio, path, who="alice", **kwargs) -> httpx.Response:
    with server.client(auth=(studio["names"][who], studio["tokens"][who])) as client:
        return client.get(f"/maven/studio/{path}", **kwargs)


def artifact_path(studio, version, extension="jar") -> str:
    return f"com/acme/studio/{studio['id']}/{version}/{studio['id']}-{version}.{extension}"


def test_releases_follow_the_reference_contract(server, studio):
    first = release(server, studio, "MINOR")
    assert first.status_code == 201, first.text
    assert first.json() == {
        "version": "0.1.0",
        "bundleSymbolicName": f"studio.extensions.{studio['id']}",
        "mavenCoordinates": f"{GROUP}:{studio['id']}:0.1.0",
    }
    assert [release(server, studio, name).json()["version"] for name in ("PATCH", "MINOR", "MAJOR")] == [
        "0.1.1",
        "0.2.0",
        "1.0.0",
    ]
    assert release(server, studio, "1.1.0-rc1").json()["version"] == "1.1.0-rc1"
    assert release(server, studio, "MINOR").json()["version"] == "1.1.0"  # the rc, finalised
    assert release(server, studio, "1.2.0-beta_2.x-y").status_code == 201


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"revision": "master", "versionName": "1.0.0"}, 409, "already released"),
        ({"revision": "no-such-branch", "versionName": "9.0.0"}, 422, "not a branch, tag or commit"),
        ({"revision": "--upload-pack=evil", "versionName": "9.0.1"}, 422, "not a branch, tag or commit"),
        ({"revision": "master", "versionName": "1.2"}, 422, "is not a version"),
        ({"revision": "master", "versionName": "1.2.3-"}, 422, "is not a version"),
        ({"revision": "master", "versionName": "v1.2.3"}, 422, "is not a version"),
        ({"revision": "master"}, 422, "not of the right shape"),
        ({"revision": 7, "versionName": "9.0.2"}, 422, "not of the right shape"),
        ([], 422, "not of the right shape"),
    ],
)
def test_bad_release_requests_get_clear_answers(server, studio, body, status, words):
    if status == 409:
        release(server, studio, "1.0.0")
    with server.client(auth=(studio["names"]["alice"], studio["tokens"]["alice"])) as client:
        response = client.post(f"/studio/v2/project/{studio['id']}/releases", json=body)
    assert response.status_code == status and words in response.json()["message"], response.text


def test_a_body_that_is_not_json_is_a_422(server, studio):
    for content in (b"revision=master", b"\xff\xfe", b'{"revision": "master", "versionName": '):
        with server.client(auth=(studio["names"]["alice"], studio["tokens"]["alice"])) as client:
            response = client.post(
                f"/studio/v2/project/{studio['id']}/releases",
                content=content,
                headers={"Content-Type": "application/json"},
            )
        assert response.status_code == 422 and "must be JSON" in response.json()["message"]


def test_readers_may_not_release_and_strangers_see_nothing(server, studio):
    refused = release(server, studio, "MINOR", who="bob")
    assert refused.status_code == 403 and "needs write access" in refused.json()["message"]
    hidden = release(server, studio, "MINOR", who="carol")
    with server.client(auth=(studio["names"]["carol"], studio["tokens"]["carol"])) as client:
        missing = client.post(
            "/studio/v2/project/no-such-project/releases", json={"revision": "master", "versionName": "MINOR"}
        )
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["message"].replace(studio["id"], "X") == missing.json()["message"].replace(
        "no-such-project", "X"
    )
    anonymous = httpx.post(
        f"{server.base_url}/studio/v2/project/{studio['id']}/releases",
        json={"revision": "master", "versionName": "MINOR"},
    )
    assert anonymous.status_code == 401


def test_concurrent_releases_of_one_version_publish_it_once(server, studio):
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(lambda _: release(server, studio, "5.0.0").status_code, range(8)))
    assert statuses == [201] + [409] * 7
    artifact_dir = server.data_dir / "maven" / "studio" / "com" / "acme" / "studio" / studio["id"]
    assert not [p.name for p in artifact_dir.iterdir() if p.name.startswith(".staging")]
    assert len(sorted((artifact_dir / "5.0.0").iterdir())) == 10  # jar, pom, and 4 checksums each
    metadata = get(server, studio, f"com/acme/studio/{studio['id']}/maven-metadata.xml").text
    assert metadata.count("<version>5.0.0</version>") == 1


def test_published_files_and_checksums_match(server, studio):
    version = release(server, studio, "7.0.0").json()["version"]
    for extension in ("jar", "pom"):
        content = get(server, studio, artifact_path(studio, version, extension)).content
        for algorithm in ("md5", "sha1", "sha256", "sha512"):
            published = get(server, studio, artifact_path(studio, version, f"{extension}.{algorithm}")).text
            assert published.strip() == hashlib.new(algorithm, content).hexdigest()
    jar = zipfile.ZipFile(io.BytesIO(get(server, studio, artifact_path(studio, version)).content))
    assert {"README.md", "OSGI-INF/extensions.xml"} <= set(jar.namelist())
    assert f"Bundle-SymbolicName: studio.extensions.{studio['id']}" in jar.read("META-INF/MANIFEST.MF").decode()
    pom = get(server, studio, artifact_path(studio, version, "pom")).text
    assert f"<groupId>{GROUP}</groupId>" in pom and f"<version>{version}</version>" in pom
    metadata_path = f"com/acme/studio/{studio['id']}/maven-metadata.xml"
    metadata = get(server, studio, metadata_path).content
    assert get(server, studio, metadata_path + ".sha1").text == hashlib.sha1(metadata).hexdigest()


def test_the_repository_behaves_like_a_static_maven_repository(server, studio):
    version = release(server, studio, "8.0.0").json()["version"]
    url = f"{server.base_url}/maven/studio/{artifact_path(studio, version)}"
    challenge = httpx.get(url)  # Maven and Nexus first ask without credentials ...
    assert challenge.status_code == 401 and challenge.headers["www-authenticate"].startswith("Basic realm=")
    auth = (studio["names"]["bob"], studio["tokens"]["bob"])  # ... then again with them
    full = httpx.get(url, auth=auth)
    assert full.status_code == 200 and full.headers["content-type"] == "application/java-archive"
    head = httpx.head(url, auth=auth)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(full.content)) and head.headers["etag"] == full.headers["etag"]
    unchanged = httpx.get(url, auth=auth, headers={"If-None-Match": full.headers["etag"]})
    assert unchanged.status_code == 304 and unchanged.content == b""
    part = httpx.get(url, auth=auth, headers={"Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == full.content[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{len(full.content)}"
    assert httpx.get(url, auth=(studio["names"]["bob"], PASSWORD)).status_code == 401  # passwords: no


@pytest.mark.parametrize(
    "path",
    [
        "com/acme/studio/{id}/../../../../../etc/passwd",
        "com/acme/studio/{id}/%2e%2e/%2e%2e/x.jar",
        "com%2Facme%2Fstudio/{id}/maven-metadata.xml",
        "com/acme/studio/{id}/1.0.0/a%00b.jar",
        "x/" * 600 + "y.jar",
        "com/acme/studio/{id}/9.9.9/{id}-9.9.9.jar",
        "com/other/{id}/maven-metadata.xml",
        "com/acme/studio/no-such-project/maven-metadata.xml",
        "maven-metadata.xml",
        "",
    ],
)
def test_paths_outside_what_one_may_read_are_not_found(server, studio, path):
    response = get(server, studio, path.replace("{id}", studio["id"]))
    assert response.status_code == 404, response.text


def test_a_stranger_cannot_tell_a_hidden_artifact_from_a_missing_one(server, studio):
    version = release(server, studio, "9.0.0").json()["version"]
    hidden = get(server, studio, artifact_path(studio, version), who="carol")
    missing = get(server, studio, artifact_path(studio, "9.9.9"), who="carol")
    assert hidden.status_code == missing.status_code == 404 and hidden.text == missing.text


@pytest.mark.parametrize("wanted, resolved", [("0.1.0", "0.1.0"), ("[0.1,0.2)", "0.1.1")])
def test_real_maven_resolves_a_release_with_the_token(server, studio, mvn, tmp_path, wanted, resolved):
    for version in ("0.1.0", "0.1.1"):  # released by the first test; made sure of here
        assert release(server, studio, version).status_code in (201, 409)
    settings = write_settings(
        tmp_path / "settings.xml", server.base_url, studio["names"]["bob"], studio["tokens"]["bob"], "tokensmith-studio"
    )
    local = tmp_path / "m2"
    result = dependency_get(mvn, settings, local, f"{GROUP}:{studio['id']}:{wanted}")
    assert result.returncode == 0, result.stdout[-3000:]
    artifact_dir = local / "com" / "acme" / "studio" / studio["id"]
    jar = artifact_dir / resolved / f"{studio['id']}-{resolved}.jar"
    assert jar.exists() and zipfile.ZipFile(jar).read("README.md") == b"# ACME contracts\n"
    if wanted.startswith("["):  # a range is resolved from the repository's maven-metadata.xml
        assert (artifact_dir / "maven-metadata-tokensmith-studio.xml").exists()


def test_real_maven_is_refused_with_a_revoked_token(server, studio, mvn, tmp_path):
    name = studio["names"]["bob"]
    doomed = server.create_token(name, f"doomed {uuid.uuid4().hex[:6]}")
    with server.client(auth=(name, doomed)) as client:
        me = client.get("/api/v1/me").json()
        assert client.delete(f"/api/v1/tokens/{me['token']['id']}").status_code == 204
    settings = write_settings(tmp_path / "settings.xml", server.base_url, name, doomed, "tokensmith-studio")
    result = dependency_get(mvn, settings, tmp_path / "m2", f"{GROUP}:{studio['id']}:0.1.0", quiet=False)
    assert result.returncode != 0 and "401" in result.stdout


def test_my_applications_lists_the_releases(server, studio):
    from tests.support.pages import sign_in

    release(server, studio, "MINOR")
    with server.client() as browser:
        assert sign_in(browser, studio["names"]["bob"], PASSWORD).status_code == 303
        page = browser.get("/applications").text
    assert f"<code>{GROUP}:{studio['id']}:0.1.0</code>" in page
