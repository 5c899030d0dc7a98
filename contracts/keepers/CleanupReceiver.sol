// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";
import {IReceiver} from "./IReceiver.sol";

/// @dev The manager function this receiver calls; its signature is stable across manager versions.
interface ISessionCleanup {
    /// @notice Closes up to `maxSessions` idle sessions (refunds credited to their owners).
    function cleanupOldSessionsUpTo(uint256 maxSessions) external returns (uint256 closed);
}

/// @title CleanupReceiver
/// @notice Receives the dtnsess CRE keeper workflow's reports (through CRE's KeystoneForwarder) and
///         runs the AdvancedSessionManager's bounded cleanup.
/// @dev Cleanup is permissionless on the manager, so this contract grants nothing anyone lacks; its
///      checks keep reports from other workflows, chains or times from running through it. A report
///      is abi.encode(uint256 chainId, uint256 scheduledAt, uint256 maxSessions): the chain it is for
///      and the cron slot it was made for (CRE's advice against cross-chain and same-chain replay),
///      and the bound, capped by the owner's maxBatch.
contract CleanupReceiver is IReceiver, Ownable2Step {
    uint256 public constant REPORT_LENGTH = 96;
    /// @notice A report's scheduled time may lead the chain's clock by at most this (DON and chain
    ///         clocks differ a little); a far-future time would lock out every later report.
    uint256 public constant MAX_CLOCK_LEAD = 15 minutes;
    // workflowId (32) + workflowName (10) + workflowOwner (20); the forwarder appends a 2-byte reportId.
    uint256 private constant METADATA_MIN_LENGTH = 62;

    ISessionCleanup public immutable manager;
    /// @notice The only caller of onReport: CRE's KeystoneForwarder on this chain.
    address public forwarder;
    /// @notice Reports must come from this workflow id (when set) ...
    bytes32 public workflowId;
    /// @notice ... and/or from a workflow of this owner (when set); at least one must be set.
    address public workflowOwner;
    /// @notice Checked only together with workflowOwner (names are 40 bits and unique per owner only).
    bytes10 public workflowName;
    /// @notice The most sessions one report may close.
    uint256 public maxBatch;
    /// @notice The scheduled time of the last report accepted; older or equal ones are refused.
    uint256 public lastScheduledAt;

    event CleanupPerformed(uint256 indexed scheduledAt, uint256 maxSessions, uint256 closed);
    event CleanupReverted(uint256 indexed scheduledAt, uint256 maxSessions, bytes reason);
    event ForwarderSet(address indexed forwarder);
    event WorkflowSet(bytes32 indexed workflowId, address indexed workflowOwner, bytes10 workflowName);
    event MaxBatchSet(uint256 maxBatch);

    error InvalidForwarder(address sender, address expected);
    error WorkflowNotConfigured();
    error InvalidMetadata(uint256 length);
    error InvalidWorkflowId(bytes32 received, bytes32 expected);
    error InvalidWorkflowOwner(address received, address expected);
    error InvalidWorkflowName(bytes10 received, bytes10 expected);
    error WorkflowNameRequiresOwner();
    error InvalidReport(uint256 length);
    error WrongChain(uint256 reportChainId, uint256 chainId);
    error StaleReport(uint256 scheduledAt, uint256 lastScheduledAt);
    error ReportFromFuture(uint256 scheduledAt, uint256 blockTimestamp);
    error ZeroBatch();
    error ZeroAddress();
    error RenounceDisabled();

    constructor(address manager_, address forwarder_, uint256 maxBatch_) Ownable(msg.sender) {
        if (manager_ == address(0)) revert ZeroAddress();
        manager = ISessionCleanup(manager_);
        setForwarder(forwarder_);
        setMaxBatch(maxBatch_);
    }

    /// @inheritdoc IReceiver
    /// @dev A refused report reverts (the forwarder records the delivery as failed). An accepted one
    ///      never reverts for the manager's sake: a cleanup that reverts (or runs out of gas) is
    ///      reported by CleanupReverted, the slot is still used up, and the next cron run tries again.
    function onReport(bytes calldata metadata, bytes calldata report) external override {
        if (msg.sender != forwarder) revert InvalidForwarder(msg.sender, forwarder);
        _checkWorkflow(metadata);
        if (report.length != REPORT_LENGTH) revert InvalidReport(report.length);
        (uint256 chainId, uint256 scheduledAt, uint256 maxSessions) = abi.decode(report, (uint256, uint256, uint256));
        if (chainId != block.chainid) revert WrongChain(chainId, block.chainid);
        if (scheduledAt <= lastScheduledAt) revert StaleReport(scheduledAt, lastScheduledAt);
        if (scheduledAt > block.timestamp + MAX_CLOCK_LEAD) revert ReportFromFuture(scheduledAt, block.timestamp);
        if (maxSessions == 0) revert ZeroBatch();
        lastScheduledAt = scheduledAt;
        uint256 bound = maxSessions < maxBatch ? maxSessions : maxBatch;
        try manager.cleanupOldSessionsUpTo(bound) returns (uint256 closed) {
            emit CleanupPerformed(scheduledAt, bound, closed);
        } catch (bytes memory reason) {
            emit CleanupReverted(scheduledAt, bound, reason);
        }
    }

    /// @notice Sets the forwarder (CRE's KeystoneForwarder for this chain; never zero).
    function setForwarder(address forwarder_) public onlyOwner {
        if (forwarder_ == address(0)) revert ZeroAddress();
        forwarder = forwarder_;
        emit ForwarderSet(forwarder_);
    }

    /// @notice Sets the workflow identity reports must carry. All zero refuses every report (a pause).
    /// @param name_ The workflow name as CRE encodes it: the first 10 hex characters of
    ///        sha256(name), as ASCII bytes.
    function setWorkflow(bytes32 id_, address owner_, bytes10 name_) external onlyOwner {
        if (name_ != bytes10(0) && owner_ == address(0)) revert WorkflowNameRequiresOwner();
        workflowId = id_;
        workflowOwner = owner_;
        workflowName = name_;
        emit WorkflowSet(id_, owner_, name_);
    }

    /// @notice Sets the most sessions one report may close (the manager bounds it by gas too).
    function setMaxBatch(uint256 maxBatch_) public onlyOwner {
        if (maxBatch_ == 0) revert ZeroBatch();
        maxBatch = maxBatch_;
        emit MaxBatchSet(maxBatch_);
    }

    /// @dev Without an owner nobody could move the receiver to a new forwarder or workflow.
    function renounceOwnership() public pure override {
        revert RenounceDisabled();
    }

    /// @inheritdoc IERC165
    function supportsInterface(bytes4 interfaceId) external pure override returns (bool) {
        return interfaceId == type(IReceiver).interfaceId || interfaceId == type(IERC165).interfaceId;
    }

    function _checkWorkflow(bytes calldata metadata) private view {
        bytes32 wantId = workflowId;
        address wantOwner = workflowOwner;
        if (wantId == bytes32(0) && wantOwner == address(0)) revert WorkflowNotConfigured();
        if (metadata.length < METADATA_MIN_LENGTH) revert InvalidMetadata(metadata.length);
        bytes32 id = bytes32(metadata[0:32]);
        if (wantId != bytes32(0) && id != wantId) revert InvalidWorkflowId(id, wantId);
        address author = address(bytes20(metadata[42:62]));
        if (wantOwner != address(0) && author != wantOwner) revert InvalidWorkflowOwner(author, wantOwner);
        bytes10 wantName = workflowName;
        bytes10 name = bytes10(metadata[32:42]);
        if (wantName != bytes10(0) && name != wantName) revert InvalidWorkflowName(name, wantName);
    }
}
