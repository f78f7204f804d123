"""One exception tree for logship.

Every error that can cross the wire carries its Kafka error code (`code`); errors that
exist only on one side (a lost connection, a bad config file) have code None. The CLI maps
classes to exit codes through `exit_status`; the library never prints or exits.
"""

from __future__ import annotations


class LogshipError(Exception):
    """Base class of every error logship raises on purpose."""

    code: int | None = -1
    retriable = False
    exit_status = 1


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


_BY_CODE: dict[int, type[LogshipError]] = {}


def _register(cls: type[LogshipError]) -> None:
    for sub in cls.__subclasses__():
        if sub.code is not None and sub.code not in _BY_CODE:
            _BY_CODE[sub.code] = sub
        _register(sub)


_register(LogshipError)


class KafkaError(LogshipError):
    """An error code from the wire that logship has no dedicated class for."""

    def __init__(self, code: int, message: str = ""):
        super().__init__(message or f"Kafka error code {code}")
        self.code = code


def error_for_code(code: int, message: str = "") -> LogshipError:
    """The exception for a Kafka error code; unknown codes keep their number."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return KafkaError(code, message)
    return cls(message or f"{cls.__name__} (Kafka error code {code})")
