"""The per-API schema tables and the registry the codec looks them up in."""

from __future__ import annotations

from types import MappingProxyType

from ..schema import Api
from . import admin_ops, cluster, configs, groups, interbroker, produce_fetch, sasl

#: api key -> Api (its schema and the versions the codec implements)
APIS: MappingProxyType[int, Api] = MappingProxyType(
    {api.key: api for api in (*produce_fetch.APIS, *cluster.APIS, *groups.APIS, *configs.APIS, *admin_ops.APIS, *sasl.APIS, *interbroker.APIS)})

#: api key -> (lowest, highest) version the codec encodes and decodes
CODEC_VERSIONS = MappingProxyType({key: api.versions for key, api in sorted(APIS.items())})

__all__ = ["APIS", "CODEC_VERSIONS"]
