// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IDtnAi} from "./IDtnAi.sol";

/// @title DtnDefaults
/// @notice Routing and array helpers with the values the deployed DTN expects.
library DtnDefaults {
    /// @dev NOTE: the system namespace is hashed with abi.encode (not encodePacked), as on the deployed DTN.
    function systemTrustNamespace() internal pure returns (bytes32) {
        return keccak256(abi.encode("trust.system.authored"));
    }

    /// @notice The id of a node named "<owner>.<name>": keccak256("node.<owner>.<name>").
    function nodeId(string memory ownerDotName) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked("node.", ownerDotName));
    }

    /// @notice Default routing: system trust, redundancy 1, confidence 8, aggregation ANY.
    function defaultSystemTrust() internal pure returns (IDtnAi.DtnRouting memory) {
        return namespaces(singleArray(systemTrustNamespace()));
    }

    /// @notice Routing to the given trust namespaces with the default parameters.
    function namespaces(bytes32[] memory namespaceIds) internal pure returns (IDtnAi.DtnRouting memory) {
        return IDtnAi.DtnRouting({
            trustNamespaceIds: namespaceIds,
            trustedNodeIds: new bytes32[](0),
            redundancy: 1,
            confidenceLevel: 8,
            aggregationType: IDtnAi.AggregationType.ANY
        });
    }

    /// @notice Routing to named nodes only (no namespaces), redundancy 1, aggregation ANY.
    function customNodes(bytes32[] memory nodeIds) internal pure returns (IDtnAi.DtnRouting memory) {
        return IDtnAi.DtnRouting({
            trustNamespaceIds: new bytes32[](0),
            trustedNodeIds: nodeIds,
            redundancy: 1,
            confidenceLevel: 8,
            aggregationType: IDtnAi.AggregationType.ANY
        });
    }

    function singleArray(bytes32 value) internal pure returns (bytes32[] memory arr) {
        arr = new bytes32[](1);
        arr[0] = value;
    }

    function singleArray(string memory value) internal pure returns (string[] memory arr) {
        arr = new string[](1);
        arr[0] = value;
    }
}
