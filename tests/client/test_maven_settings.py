"""The settings.xml edit keeps everything else byte for byte."""

from __future__ import annotations

import stat

import pytest

from tokensmith.client import maven_settings
from tokensmith.client.errors import InvalidInput

EXISTING = """<?xml version="1.0" encoding="UTF-8"?>
<!-- my settings: keep this comment -->
<settings xmlns="http://maven.apache.org/SETTINGS/1.0.0">
\t<localRepository>/srv/m2</localRepository>
  <servers>
    <server><id>corporate</id><username>me</username><password>{secret}</password></server>
  </servers>
  <mirrors><mirror><id>m</id><mirrorOf>*</mirrorOf><url>https://mirror.example/</url></mirror></mirrors>
</settings>
"""


def test_the_entry_is_added_and_nothing_else_moves():
    after = maven_settings.updated(EXISTING, "alice", "TOKEN-ONE")
    entry = maven_settings.server_entry("alice", "TOKEN-ONE")
    assert "<password>TOKEN-ONE</password>" in entry
    # Take out exactly what was added: the original comes back, byte for byte.
    assert after.replace(f"  {entry}\n  ", "", 1) == EXISTING


def test_updating_replaces_only_our_entry():
    once = maven_settings.updated(EXISTING, "alice", "TOKEN-ONE")
    twice = maven_settings.updated(once, "alice", "TOKEN-TWO")
    assert twice == once.replace("TOKEN-ONE", "TOKEN-TWO")
    assert twice.count("<id>tokensmith-studio</id>") == 1 and "corporate" in twice


@pytest.mark.parametrize("text", [
    '<settings>\n</settings>\n', '<settings xmlns="x">\n  <servers/>\n</settings>\n',
    '<?xml version="1.0"?>\n<settings>\n  <servers>\n  </servers>\n</settings>\n',
])
def test_files_without_servers_get_them(text):
    after = maven_settings.updated(text, "bob", "T")
    assert after.count("<servers>") == 1 and "<id>tokensmith-studio</id>" in after and after.endswith("</settings>\n")


def test_a_file_that_is_not_settings_is_refused():
    with pytest.raises(InvalidInput, match="no <settings>"):
        maven_settings.updated("<project/>", "bob", "T")


def test_markup_in_values_is_escaped(tmp_path):
    path = tmp_path / "m2" / "settings.xml"
    assert maven_settings.write(path, "a&b", "<t>") is True
    assert "<username>a&amp;b</username>" in path.read_text() and "<password>&lt;t&gt;</password>" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert maven_settings.write(path, "a&b", "<u>") is False
