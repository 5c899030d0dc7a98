// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";

/// @title IReceiver: what Chainlink CRE's KeystoneForwarder calls with a workflow's report.
/// @dev Written from CRE's documentation ("Building Consumer Contracts", docs.chain.link/cre) and
///      smartcontractkit/chainlink-evm contracts/src/v0.8/keystone/interfaces/IReceiver.sol. Not
///      imported from Chainlink's npm contracts package: its IReceiver imports IERC165 from an
///      aliased OpenZeppelin 5.0.2 install (openzeppelin/contracts-5-0-2), which this project's one
///      OpenZeppelin remapping does not resolve.
///      The forwarder checks ERC-165 support of this interface (onReport's selector) before delivering.
interface IReceiver is IERC165 {
    /// @notice Handles a report the forwarder verified.
    /// @param metadata abi.encodePacked(bytes32 workflowId, bytes10 workflowName, address workflowOwner,
    ///        bytes2 reportId): 64 bytes from KeystoneForwarder (62 from other tooling).
    /// @param report The workflow's ABI-encoded payload.
    function onReport(bytes calldata metadata, bytes calldata report) external;
}
