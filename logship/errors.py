"""One exception tree for logship.

Every error that can cross the wire carries its Kafka error code (`code`); errors that
exist only on one side (a lost connection, a bad config file) have code None. The CLI maps
classes to exit codes through `exit_status`; the library never prints or exits.

KAFKA_ERRORS names every code of the protocol and says in one line what it means;
`error_for_code` builds the exception for a code with that text in its message, so no user
ever reads a bare number. A class's `hint` says what to do about it (the CLI adds it).
"""

from __future__ import annotations

import re


class LogshipError(Exception):
    """Base class of every error logship raises on purpose."""

    code: int | None = -1
    retriable = False
    exit_status = 1
    #: What a user can do about it, added to the one line the CLI prints (None: nothing to add).
    hint: str | None = None


class UnknownServerError(LogshipError):
    """The broker failed unexpectedly (Kafka UNKNOWN_SERVER_ERROR)."""

    code = -1


class ProtocolError(LogshipError):
    """Malformed frame or unexpected message; the connection that carried it is closed."""

    code = None


class FrameTooLargeError(ProtocolError):
    """A frame's length prefix exceeds the configured maximum; refused before allocation."""


class CorruptRecordError(LogshipError):
    """A record batch failed its CRC, length or header checks (CORRUPT_MESSAGE)."""

    code = 2


class InvalidRecordError(LogshipError):
    """A record batch is well formed but not acceptable (INVALID_RECORD)."""

    code = 87


class UnsupportedCompression(LogshipError):
    """A batch uses a compression codec this installation cannot decode."""

    code = 76


class DecompressionLimitError(CorruptRecordError):
    """A compressed batch inflates past the allowed size; refused, not allocated."""


class DamagedBatchError(CorruptRecordError):
    """A fetched batch that cannot be read; the records before it were returned first.

    `offset` is the damaged batch's base offset and `next_offset` where the batch after it
    starts (what to resume from to skip it)."""

    def __init__(self, topic: str, partition: int, offset: int, next_offset: int, reason: str):
        super().__init__(f"{topic} partition {partition}: the batch at offset {offset} is damaged ({reason}); "
                         f"the next batch starts at offset {next_offset}")
        self.topic, self.partition, self.offset, self.next_offset = topic, partition, offset, next_offset
        self.hint = f"skip it with: logship consume {topic} -p {partition} -o {next_offset}"


class OffsetOutOfRangeError(LogshipError):
    """The requested offset is below the log start or above the log end."""

    code = 1


class UnknownTopicError(LogshipError):
    """No such topic or partition (UNKNOWN_TOPIC_OR_PARTITION)."""

    code = 3
    exit_status = 4
    retriable = True


class LeaderNotAvailableError(LogshipError):
    """The partition has no leader yet (a topic being created, or an election under way)."""

    code = 5
    retriable = True


class NotLeaderError(LogshipError):
    """The request was sent to a broker that does not lead the partition."""

    code = 6
    retriable = True


class FencedLeaderEpochError(LogshipError):
    """The request named a leader epoch older than the partition's (FENCED_LEADER_EPOCH)."""

    code = 74
    retriable = True


class UnknownLeaderEpochError(LogshipError):
    """The request named a leader epoch newer than the partition's (UNKNOWN_LEADER_EPOCH)."""

    code = 75
    retriable = True


class RequestTimedOutError(LogshipError):
    """The broker did not complete the request in time."""

    code = 7
    retriable = True


class MessageTooLargeError(LogshipError):
    """A batch or request is larger than the broker accepts (MESSAGE_TOO_LARGE)."""

    code = 10
    hint = ("raise the limit with `logship serve --max-message-bytes` (Kafka: message.max.bytes) "
            "or the topic's max.message.bytes")


class RecordListTooLargeError(LogshipError):
    """The batches of one append are larger than the topic's segment.bytes (RECORD_LIST_TOO_LARGE)."""

    code = 18
    hint = "raise the topic's segment.bytes, or send smaller batches"


class InvalidTopicError(LogshipError):
    """The topic name is not valid (INVALID_TOPIC_EXCEPTION)."""

    code = 17
    exit_status = 2


class TopicAlreadyExistsError(LogshipError):
    """CreateTopics for a topic that exists."""

    code = 36


class InvalidPartitionsError(LogshipError):
    """A partition count that is not acceptable."""

    code = 37


class InvalidReplicationFactorError(LogshipError):
    """A replication factor that cannot be met."""

    code = 38


class UnsupportedVersionError(LogshipError):
    """The API key or version is not supported by the peer."""

    code = 35


class InvalidRequestError(LogshipError):
    """The request is well framed but makes no sense (INVALID_REQUEST)."""

    code = 42


class KafkaStorageError(LogshipError):
    """The broker could not write to its disk (KAFKA_STORAGE_ERROR), e.g. disk full."""

    code = 56
    retriable = True


class OffsetMetadataTooLargeError(LogshipError):
    """An offset commit's metadata string is longer than the broker keeps (OFFSET_METADATA_TOO_LARGE)."""

    code = 12


class CoordinatorLoadInProgressError(LogshipError):
    """The group coordinator is still loading committed offsets; retry (COORDINATOR_LOAD_IN_PROGRESS)."""

    code = 14
    retriable = True


class CoordinatorNotAvailableError(LogshipError):
    """No group coordinator can answer for the group now (COORDINATOR_NOT_AVAILABLE)."""

    code = 15
    retriable = True


class NotCoordinatorError(LogshipError):
    """The broker asked is not the group's coordinator (NOT_COORDINATOR)."""

    code = 16
    retriable = True


class IllegalGenerationError(LogshipError):
    """The member's generation is not the group's current one (ILLEGAL_GENERATION)."""

    code = 22


class InconsistentGroupProtocolError(LogshipError):
    """The member's protocol type or protocols do not match the group's (INCONSISTENT_GROUP_PROTOCOL)."""

    code = 23


class InvalidGroupIdError(LogshipError):
    """The group id is empty or otherwise not acceptable (INVALID_GROUP_ID)."""

    code = 24
    exit_status = 2


class UnknownMemberIdError(LogshipError):
    """The member id is not a member of the group (UNKNOWN_MEMBER_ID)."""

    code = 25


class InvalidSessionTimeoutError(LogshipError):
    """The session timeout is outside the broker's allowed range (INVALID_SESSION_TIMEOUT)."""

    code = 26


class RebalanceInProgressError(LogshipError):
    """The group is rebalancing; the member must rejoin (REBALANCE_IN_PROGRESS)."""

    code = 27


class MemberIdRequiredError(LogshipError):
    """JoinGroup v4+ without a member id: rejoin with the id the broker returned (MEMBER_ID_REQUIRED)."""

    code = 79


class InvalidReplicaAssignmentError(LogshipError):
    """A replica assignment that cannot be applied (INVALID_REPLICA_ASSIGNMENT)."""

    code = 39


class PolicyViolationError(LogshipError):
    """The request breaks a topic's policy, e.g. deleting records of a compacted topic (POLICY_VIOLATION)."""

    code = 44


class NonEmptyGroupError(LogshipError):
    """The group has active members, so it cannot be deleted (NON_EMPTY_GROUP)."""

    code = 68


class GroupIdNotFoundError(LogshipError):
    """The coordinator knows no such group (GROUP_ID_NOT_FOUND)."""

    code = 69
    exit_status = 4


class GroupSubscribedToTopicError(LogshipError):
    """An active member of the group subscribes to the topic, so its offsets stay (GROUP_SUBSCRIBED_TO_TOPIC)."""

    code = 86


class StoreLockedError(LogshipError):
    """Another process holds the data directory."""

    code = None


class ConfigError(LogshipError):
    """An invalid configuration file or value."""

    code = None
    exit_status = 2


class InvalidConfigError(ConfigError):
    """A config name or value the broker refuses (INVALID_CONFIG), e.g. in AlterConfigs."""

    code = 40


class BrokerUnavailableError(LogshipError):
    """Cannot connect to the broker, or the connection was lost (client side only)."""

    code = None
    exit_status = 3
    retriable = True


class SshError(LogshipError):
    """An SSH connection or a command run over it failed (`logship cluster`; client side only)."""

    code = None


class HostUnreachableError(SshError):
    """A cluster host cannot be reached over SSH, or did not answer in time."""

    exit_status = 3


class HostKeyError(SshError):
    """A host's SSH key is unknown or changed; nothing was run there."""

    hint = "check the fingerprint with the host's owner, then: logship cluster trust HOST"


class DeliveryError(LogshipError):
    """Some records given to a producer were not acknowledged (client side only).

    `failed` counts the records that could not be delivered since the previous flush;
    `first_error` is the first exception that caused a failure (a LogshipError).
    """

    code = None

    def __init__(self, failed: int, first_error: BaseException | None = None):
        reason = f": {first_error}" if first_error is not None else ""
        super().__init__(f"{failed} record{'s' if failed != 1 else ''} could not be delivered{reason}")
        self.failed = failed
        self.first_error = first_error


class OutOfOrderSequenceError(LogshipError):
    """An idempotent producer's batch does not continue its sequence (OUT_OF_ORDER_SEQUENCE_NUMBER)."""

    code = 45


class InvalidProducerEpochError(LogshipError):
    """An idempotent producer's batch carries an epoch older than its current one
    (INVALID_PRODUCER_EPOCH)."""

    code = 47


class StaleControllerEpochError(LogshipError):
    """An inter-broker request came from a controller older than one already heard from."""

    code = 11


class ClusterAuthorizationError(LogshipError):
    """Only a cluster's peer brokers may do this (replica fetches, LeaderAndIsr, StopReplica):
    the connection did not authenticate with the cluster secret."""

    code = 31


_BY_CODE: dict[int, type[LogshipError]] = {}


def _register(cls: type[LogshipError]) -> None:
    for sub in cls.__subclasses__():
        if sub.code is not None and sub.code not in _BY_CODE:
            _BY_CODE[sub.code] = sub
        _register(sub)


_register(LogshipError)


#: Every error code of the Kafka protocol (Kafka's Errors.java): code -> (name, what it means).
#: The names are Kafka's, so they can be searched for; the meanings are one line each.
KAFKA_ERRORS: dict[int, tuple[str, str]] = {
    -1: ("UNKNOWN_SERVER_ERROR", "the broker failed unexpectedly while handling the request; its log says why"),
    0: ("NONE", "no error"),
    1: ("OFFSET_OUT_OF_RANGE", "the offset is outside the offsets the partition holds"),
    2: ("CORRUPT_MESSAGE", "a record batch failed its CRC or size checks, or is otherwise corrupt"),
    3: ("UNKNOWN_TOPIC_OR_PARTITION", "the topic or partition does not exist on this broker"),
    4: ("INVALID_FETCH_SIZE", "the requested fetch size is not valid"),
    5: ("LEADER_NOT_AVAILABLE", "the partition has no leader right now (an election is under way); retry"),
    6: ("NOT_LEADER_OR_FOLLOWER", "this broker does not lead (or replicate) the partition"),
    7: ("REQUEST_TIMED_OUT", "the broker did not complete the request in time"),
    8: ("BROKER_NOT_AVAILABLE", "the broker is not available"),
    9: ("REPLICA_NOT_AVAILABLE", "a replica of the partition is not available"),
    10: ("MESSAGE_TOO_LARGE", "a record batch is larger than the broker accepts"),
    11: ("STALE_CONTROLLER_EPOCH", "the controller moved to another broker"),
    12: ("OFFSET_METADATA_TOO_LARGE", "the metadata string of an offset commit is too long"),
    13: ("NETWORK_EXCEPTION", "the broker disconnected before it answered"),
    14: ("COORDINATOR_LOAD_IN_PROGRESS", "the group coordinator is still loading; retry"),
    15: ("COORDINATOR_NOT_AVAILABLE", "no group coordinator is available"),
    16: ("NOT_COORDINATOR", "this broker is not the group's coordinator"),
    17: ("INVALID_TOPIC_EXCEPTION",
         "the topic is not valid here: a name is 1 to 249 of a-z A-Z 0-9 . _ - (not . or ..), and internal "
         "topics such as __consumer_offsets refuse this request"),
    18: ("RECORD_LIST_TOO_LARGE", "a record batch is larger than the broker's segment size"),
    19: ("NOT_ENOUGH_REPLICAS", "refused: fewer in-sync replicas than required"),
    20: ("NOT_ENOUGH_REPLICAS_AFTER_APPEND", "written, but to fewer in-sync replicas than required"),
    21: ("INVALID_REQUIRED_ACKS", "the acks value is not valid (0, 1 or -1/all)"),
    22: ("ILLEGAL_GENERATION", "the member's group generation is not the current one"),
    23: ("INCONSISTENT_GROUP_PROTOCOL", "the member's protocols do not match those of the group's members"),
    24: ("INVALID_GROUP_ID", "the group id is not valid"),
    25: ("UNKNOWN_MEMBER_ID", "the coordinator does not know this group member"),
    26: ("INVALID_SESSION_TIMEOUT",
         "the session timeout is outside the broker's range (group.min/max.session.timeout.ms)"),
    27: ("REBALANCE_IN_PROGRESS", "the group is rebalancing; its members must rejoin"),
    28: ("INVALID_COMMIT_OFFSET_SIZE", "the committed offset data is too large"),
    29: ("TOPIC_AUTHORIZATION_FAILED", "not authorized to use this topic"),
    30: ("GROUP_AUTHORIZATION_FAILED", "not authorized to use this consumer group"),
    31: ("CLUSTER_AUTHORIZATION_FAILED", "not authorized for this cluster operation"),
    32: ("INVALID_TIMESTAMP", "a record's timestamp is outside the accepted range"),
    33: ("UNSUPPORTED_SASL_MECHANISM", "the broker does not support this SASL mechanism"),
    34: ("ILLEGAL_SASL_STATE", "the request is not valid in the current SASL state"),
    35: ("UNSUPPORTED_VERSION", "the broker does not support this version of the request"),
    36: ("TOPIC_ALREADY_EXISTS", "a topic of that name already exists"),
    37: ("INVALID_PARTITIONS", "the number of partitions is not valid"),
    38: ("INVALID_REPLICATION_FACTOR", "the replication factor is below 1 or above the number of brokers"),
    39: ("INVALID_REPLICA_ASSIGNMENT", "the replica assignment is not valid"),
    40: ("INVALID_CONFIG", "a configuration value is not valid"),
    41: ("NOT_CONTROLLER", "this broker is not the cluster's controller"),
    42: ("INVALID_REQUEST", "the broker could not make sense of the request (its log says more)"),
    43: ("UNSUPPORTED_FOR_MESSAGE_FORMAT", "the broker's message format does not support the request"),
    44: ("POLICY_VIOLATION", "the request breaks a policy configured on the broker"),
    45: ("OUT_OF_ORDER_SEQUENCE_NUMBER", "the broker received an out-of-order producer sequence number"),
    46: ("DUPLICATE_SEQUENCE_NUMBER", "the broker received a duplicate producer sequence number"),
    47: ("INVALID_PRODUCER_EPOCH", "the producer's epoch is out of date"),
    48: ("INVALID_TXN_STATE", "the transactional operation is not valid in the transaction's state"),
    49: ("INVALID_PRODUCER_ID_MAPPING", "the producer id is not assigned to this transactional id"),
    50: ("INVALID_TRANSACTION_TIMEOUT", "the transaction timeout is above the broker's transaction.max.timeout.ms"),
    51: ("CONCURRENT_TRANSACTIONS", "another operation on the same transaction is in progress; retry"),
    52: ("TRANSACTION_COORDINATOR_FENCED", "the transaction coordinator is no longer current"),
    53: ("TRANSACTIONAL_ID_AUTHORIZATION_FAILED", "not authorized to use this transactional id"),
    54: ("SECURITY_DISABLED", "security features are disabled on the broker"),
    55: ("OPERATION_NOT_ATTEMPTED", "the broker did not try this operation because another in the request failed"),
    56: ("KAFKA_STORAGE_ERROR", "the broker could not read or write its disk (full, or failing)"),
    57: ("LOG_DIR_NOT_FOUND", "the log directory is not in the broker's configuration"),
    58: ("SASL_AUTHENTICATION_FAILED", "SASL authentication failed"),
    59: ("UNKNOWN_PRODUCER_ID", "the broker has no state for this producer id (its records may have expired)"),
    60: ("REASSIGNMENT_IN_PROGRESS", "a partition reassignment is in progress"),
    61: ("DELEGATION_TOKEN_AUTH_DISABLED", "delegation tokens are not enabled"),
    62: ("DELEGATION_TOKEN_NOT_FOUND", "the delegation token does not exist"),
    63: ("DELEGATION_TOKEN_OWNER_MISMATCH", "the principal is not the token's owner or renewer"),
    64: ("DELEGATION_TOKEN_REQUEST_NOT_ALLOWED", "delegation token requests are not allowed on this channel"),
    65: ("DELEGATION_TOKEN_AUTHORIZATION_FAILED", "not authorized for this delegation token"),
    66: ("DELEGATION_TOKEN_EXPIRED", "the delegation token has expired"),
    67: ("INVALID_PRINCIPAL_TYPE", "the principal type is not supported"),
    68: ("NON_EMPTY_GROUP", "the consumer group still has members"),
    69: ("GROUP_ID_NOT_FOUND", "the consumer group does not exist"),
    70: ("FETCH_SESSION_ID_NOT_FOUND", "the fetch session does not exist"),
    71: ("INVALID_FETCH_SESSION_EPOCH", "the fetch session epoch is not valid"),
    72: ("LISTENER_NOT_FOUND", "the partition leader has no listener matching this one"),
    73: ("TOPIC_DELETION_DISABLED", "topic deletion is disabled on the broker"),
    74: ("FENCED_LEADER_EPOCH", "the request's leader epoch is older than the broker's"),
    75: ("UNKNOWN_LEADER_EPOCH", "the request's leader epoch is newer than the broker's"),
    76: ("UNSUPPORTED_COMPRESSION_TYPE", "the compression codec is not supported here"),
    77: ("STALE_BROKER_EPOCH", "the broker epoch has changed"),
    78: ("OFFSET_NOT_AVAILABLE", "the offset is not available yet after a leader change; retry"),
    79: ("MEMBER_ID_REQUIRED", "the member must rejoin with the member id the broker gave it"),
    80: ("PREFERRED_LEADER_NOT_AVAILABLE", "the preferred leader is not available"),
    81: ("GROUP_MAX_SIZE_REACHED", "the consumer group has reached its largest size"),
    82: ("FENCED_INSTANCE_ID", "another member with the same group.instance.id has replaced this one"),
    83: ("ELIGIBLE_LEADERS_NOT_AVAILABLE", "no eligible leader is available for the partition"),
    84: ("ELECTION_NOT_NEEDED", "the partition needs no leader election"),
    85: ("NO_REASSIGNMENT_IN_PROGRESS", "no partition reassignment is in progress"),
    86: ("GROUP_SUBSCRIBED_TO_TOPIC", "the group is subscribed to the topic, so its offsets cannot be deleted"),
    87: ("INVALID_RECORD", "the broker refused a record that failed its validation"),
    88: ("UNSTABLE_OFFSET_COMMIT", "there are unstable offsets to clear first; retry"),
    89: ("THROTTLING_QUOTA_EXCEEDED", "the throttling quota has been exceeded"),
    90: ("PRODUCER_FENCED", "a newer producer with the same transactional id has fenced this one"),
    91: ("RESOURCE_NOT_FOUND", "the request refers to a resource that does not exist"),
    92: ("DUPLICATE_RESOURCE", "the request refers to the same resource twice"),
    93: ("UNACCEPTABLE_CREDENTIAL", "the credential does not meet the broker's criteria"),
    94: ("INCONSISTENT_VOTER_SET", "a sender or receiver is not one of the expected voters"),
    95: ("INVALID_UPDATE_VERSION", "the update version is not valid"),
    96: ("FEATURE_UPDATE_FAILED", "the finalized features could not be updated"),
    97: ("PRINCIPAL_DESERIALIZATION_FAILURE", "a forwarded request's principal could not be read"),
    98: ("SNAPSHOT_NOT_FOUND", "the requested snapshot does not exist"),
    99: ("POSITION_OUT_OF_RANGE", "the requested position is outside the snapshot"),
    100: ("UNKNOWN_TOPIC_ID", "this broker does not host a topic with this id"),
    101: ("DUPLICATE_BROKER_REGISTRATION", "this broker id is already in use"),
    102: ("BROKER_ID_NOT_REGISTERED", "this broker id is not registered"),
    103: ("INCONSISTENT_TOPIC_ID", "the log's topic id does not match the request's"),
    104: ("INCONSISTENT_CLUSTER_ID", "the request's cluster id does not match the broker's"),
    105: ("TRANSACTIONAL_ID_NOT_FOUND", "the transactional id does not exist"),
    106: ("FETCH_SESSION_TOPIC_ID_ERROR", "the fetch session used topic ids inconsistently"),
    107: ("INELIGIBLE_REPLICA", "the new in-sync replica set contains an ineligible replica"),
    108: ("NEW_LEADER_ELECTED", "the partition state was updated but the leader has changed"),
    109: ("OFFSET_MOVED_TO_TIERED_STORAGE", "the offset has moved to tiered storage"),
    110: ("FENCED_MEMBER_EPOCH", "the member's epoch is fenced; it must rejoin the group"),
    111: ("UNRELEASED_INSTANCE_ID", "another member still uses this instance id"),
    112: ("UNSUPPORTED_ASSIGNOR", "the group does not support this assignor"),
    113: ("STALE_MEMBER_EPOCH", "the member's epoch is stale; retry with the current one"),
    114: ("MISMATCHED_ENDPOINT_TYPE", "the request went to an endpoint of the wrong type"),
    115: ("UNSUPPORTED_ENDPOINT_TYPE", "this endpoint type is not supported"),
    116: ("UNKNOWN_CONTROLLER_ID", "this controller id is not known"),
    117: ("UNKNOWN_SUBSCRIPTION_ID", "the telemetry subscription id is unknown or out of date"),
    118: ("TELEMETRY_TOO_LARGE", "the telemetry push is larger than the broker accepts"),
    119: ("INVALID_REGISTRATION", "the controller considers the broker's registration not valid"),
    120: ("TRANSACTION_ABORTABLE", "the transaction failed; abort it to go on"),
    121: ("INVALID_RECORD_STATE", "the record's state does not allow this acknowledgement"),
    122: ("SHARE_SESSION_NOT_FOUND", "the share session does not exist"),
    123: ("INVALID_SHARE_SESSION_EPOCH", "the share session epoch is not valid"),
    124: ("FENCED_STATE_EPOCH", "the share-group state epoch does not match"),
    125: ("INVALID_VOTER_KEY", "the voter key does not match the replica's"),
    126: ("DUPLICATE_VOTER", "the voter is already in the voter set"),
    127: ("VOTER_NOT_FOUND", "the voter is not in the voter set"),
    128: ("INVALID_REGULAR_EXPRESSION", "the regular expression is not valid"),
}


def explain(code: int) -> str:
    """`NAME: what it means` for a Kafka error code, for people (never a bare number)."""
    name, meaning = KAFKA_ERRORS.get(code, (None, None))
    if name is None:
        return f"error code {code}, which this version of logship does not know (a newer Kafka's?)"
    return f"{name}: {meaning}"


_BARE_CODE = re.compile(r"\s*\(Kafka error code (-?\d+)\)|Kafka error code (-?\d+)")


def explain_codes(message: str) -> str:
    """`message` with each "Kafka error code N" written as explain(N)."""
    def spelled(match: re.Match) -> str:
        if match.group(1) is None:
            return explain(int(match.group(2)))
        after_colon = message[:match.start()].endswith(":")  # "doing x: (Kafka error code N)"
        return f"{' ' if after_colon else ': '}{explain(int(match.group(1)))}"

    return _BARE_CODE.sub(spelled, message)


class KafkaError(LogshipError):
    """An error code from the wire that logship has no dedicated class for."""

    def __init__(self, code: int, message: str = ""):
        super().__init__(message or explain(code))
        self.code = code
        if code in _NOT_FOUND_CODES:
            self.exit_status = 4


#: Codes without a class of their own that mean "no such topic or group" (exit status 4).
_NOT_FOUND_CODES = {69, 100}  # GROUP_ID_NOT_FOUND, UNKNOWN_TOPIC_ID


def error_for_code(code: int, message: str = "") -> LogshipError:
    """The exception for a Kafka error code, its message naming the error and what it means.

    `message` says what was being done ("deleting topic 'x'"); a "Kafka error code N" in it
    is spelled out, and one that does not name the error gets ": NAME: meaning" added.
    """
    name = KAFKA_ERRORS.get(code, ("",))[0]
    if not message:
        text = explain(code)
    elif _BARE_CODE.search(message):
        text = explain_codes(message)
    elif name and name in message:
        text = message
    else:
        text = f"{message}: {explain(code)}"
    cls = _BY_CODE.get(code)
    if cls is None:
        return KafkaError(code, text)
    return cls(text)
