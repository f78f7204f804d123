"""DescribeConfigs (32), AlterConfigs (33), IncrementalAlterConfigs (44): from Kafka's message
JSON schemas of the same names (DescribeConfigs v0, removed in Kafka 4.0, from the 3.x schema).

Resource types: 2 topic, 4 broker (8 broker logger, 16 client metrics, 32 group). Config sources:
1 TOPIC_CONFIG, 4 STATIC_BROKER_CONFIG, 5 DEFAULT_CONFIG. Config types: 1 BOOLEAN, 2 STRING,
3 INT, 5 LONG, 6 DOUBLE, 7 LIST. IncrementalAlterConfigs operations: 0 SET, 1 DELETE, 2 APPEND,
3 SUBTRACT.
"""

from __future__ import annotations

from ..api_keys import ApiKey
from ..schema import Api, Field as F

DESCRIBE_CONFIGS = Api(ApiKey.DESCRIBE_CONFIGS, "DescribeConfigs", (0, 4), 4, request=(
    F("resources", "[]DescribeConfigsResource", fields=(
        F("resource_type", "int8"),
        F("resource_name", "string"),
        F("configuration_keys", "[]string", nullable="0+"),
    )),
    F("include_synonyms", "bool", "1+", default="false"),
    F("include_documentation", "bool", "3+", default="false"),
), response=(
    F("throttle_time_ms", "int32"),
    F("results", "[]DescribeConfigsResult", fields=(
        F("error_code", "int16"),
        F("error_message", "string", nullable="0+"),
        F("resource_type", "int8"),
        F("resource_name", "string"),
        F("configs", "[]DescribeConfigsResourceResult", fields=(
            F("name", "string"),
            F("value", "string", nullable="0+"),
            F("read_only", "bool"),
            F("config_source", "int8", "1+", default=-1),
            F("is_default", "bool", "0"),
            F("is_sensitive", "bool"),
            F("synonyms", "[]DescribeConfigsSynonym", "1+", fields=(
                F("name", "string", "1+"),
                F("value", "string", "1+", nullable="0+"),
                F("source", "int8", "1+"),
            )),
            F("config_type", "int8", "3+", default=0),
            F("documentation", "string", "3+", nullable="0+"),
        )),
    )),
))

ALTER_CONFIGS = Api(ApiKey.ALTER_CONFIGS, "AlterConfigs", (0, 2), 2, request=(
    F("resources", "[]AlterConfigsResource", fields=(
        F("resource_type", "int8"),
        F("resource_name", "string"),
        F("configs", "[]AlterableConfig", fields=(
            F("name", "string"),
            F("value", "string", nullable="0+"),
        )),
    )),
    F("validate_only", "bool"),
), response=(
    F("throttle_time_ms", "int32"),
    F("responses", "[]AlterConfigsResourceResponse", fields=(
        F("error_code", "int16"),
        F("error_message", "string", nullable="0+"),
        F("resource_type", "int8"),
        F("resource_name", "string"),
    )),
))

INCREMENTAL_ALTER_CONFIGS = Api(ApiKey.INCREMENTAL_ALTER_CONFIGS, "IncrementalAlterConfigs", (0, 1), 1, request=(
    F("resources", "[]AlterConfigsResource", fields=(
        F("resource_type", "int8"),
        F("resource_name", "string"),
        F("configs", "[]AlterableConfig", fields=(
            F("name", "string"),
            F("config_operation", "int8"),
            F("value", "string", nullable="0+"),
        )),
    )),
    F("validate_only", "bool"),
), response=(
    F("throttle_time_ms", "int32"),
    F("responses", "[]AlterConfigsResourceResponse", fields=(
        F("error_code", "int16"),
        F("error_message", "string", nullable="0+"),
        F("resource_type", "int8"),
        F("resource_name", "string"),
    )),
))

APIS = (DESCRIBE_CONFIGS, ALTER_CONFIGS, INCREMENTAL_ALTER_CONFIGS)
