"""kafkajs (Node.js) admin client against `logship serve`: createPartitions, deleteGroups,
describeConfigs and alterConfigs.

Skipped cleanly when node or npm is missing or kafkajs cannot be installed (no registry); kafkajs
is installed once per run into a temporary directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.integration

SCRIPT = r"""
// usage: node admin.js BROKER  -- creates partitions and deletes groups with kafkajs's admin client
const { Kafka, logLevel, ConfigResourceTypes } = require('kafkajs');
const broker = process.argv[2];
const kafka = new Kafka({ clientId: 'kjs', brokers: [broker], logLevel: logLevel.NOTHING, retry: { retries: 2 } });
(async () => {
  const admin = kafka.admin();
  await admin.connect();
  const out = {};
  await admin.createTopics({ topics: [{ topic: 'kjs', numPartitions: 1 }] });
  await admin.createPartitions({ topicPartitions: [{ topic: 'kjs', count: 3 }] });
  const meta = await admin.fetchTopicMetadata({ topics: ['kjs'] });
  out.partitions = meta.topics[0].partitions.length;
  try { await admin.createPartitions({ topicPartitions: [{ topic: 'kjs', count: 2 }] }); out.shrink = 'ok'; }
  catch (e) { out.shrink = e.type || e.name; }
  await admin.setOffsets({ groupId: 'kjs-group', topic: 'kjs', partitions: [{ partition: 0, offset: '0' }] });
  out.groupsBefore = (await admin.listGroups()).groups.map(g => g.groupId).sort();
  out.deleted = (await admin.deleteGroups(['kjs-group'])).map(r => [r.groupId, r.errorCode]);
  try { await admin.deleteGroups(['no-such-group']); out.missing = 'ok'; }
  catch (e) { out.missing = e.groups ? e.groups.map(g => g.error && g.error.type) : (e.type || e.name); }
  out.groupsAfter = (await admin.listGroups()).groups.map(g => g.groupId).sort();
  const topic = { type: ConfigResourceTypes.TOPIC, name: 'kjs' };
  await admin.alterConfigs({ validateOnly: false, resources: [{ ...topic, configEntries: [
    { name: 'retention.ms', value: '3600000' }] }] });
  const described = await admin.describeConfigs({ includeSynonyms: false, resources: [topic] });
  const entry = described.resources[0].configEntries.find(e => e.configName === 'retention.ms');
  out.retention = [entry.configValue, entry.isDefault];
  await admin.disconnect();
  console.log(JSON.stringify(out));
})().catch(e => { console.error(e.stack || String(e)); process.exit(1); });
"""


@pytest.fixture(scope="module")
def kafkajs_dir(tmp_path_factory):
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the kafkajs test")
    directory = tmp_path_factory.mktemp("kafkajs")
    try:
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "kafkajs@2"], cwd=directory,
                       capture_output=True, timeout=180, check=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot install kafkajs: {exc}")
    (directory / "admin.js").write_text(SCRIPT)
    return directory


def test_kafkajs_create_partitions_and_delete_groups(broker, kafkajs_dir):
    result = subprocess.run(["node", str(kafkajs_dir / "admin.js"), broker.address], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "partitions": 3, "shrink": "INVALID_PARTITIONS", "groupsBefore": ["kjs-group"],
        "deleted": [["kjs-group", 0]], "missing": ["GROUP_ID_NOT_FOUND"], "groupsAfter": [],
        "retention": ["3600000", False]}
