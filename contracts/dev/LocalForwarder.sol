// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ERC165Checker} from "@openzeppelin/contracts/utils/introspection/ERC165Checker.sol";
import {IReceiver} from "../keepers/IReceiver.sol";

/// @title LocalForwarder: a stand-in for Chainlink CRE's KeystoneForwarder on local chains and in tests.
/// @dev Delivers the way KeystoneForwarder 1.0.0 does (smartcontractkit/chainlink-evm,
///      contracts/cre/src/v1/KeystoneForwarder.sol): the same report(receiver, rawReport, reportContext,
///      signatures) entry and rawReport layout (version 1, workflowExecutionId 32, timestamp 4, donId 4,
///      donConfigVersion 4, workflowId 32, workflowName 10, workflowOwner 20, reportId 2, then the
///      workflow's report), onReport(rawReport[45:109], rawReport[109:]) after an ERC-165 check, a
///      receiver's revert recorded and not bubbled up, a delivered transmission (receiver, execution
///      id, report id) never delivered again, a failed one open to retry.
///      What it does not do: verify f+1 DON signatures over the report. Instead only transmitters its
///      owner allowed may deliver (reportContext and signatures are ignored), so in tests a forged
///      report must come through an allowed transmitter, exactly like a report the DON did sign.
contract LocalForwarder is Ownable {
    uint256 private constant METADATA_LENGTH = 109;
    uint256 private constant FORWARDER_METADATA_LENGTH = 45;

    enum TransmissionState { NotAttempted, InvalidReceiver, Succeeded, Failed }

    mapping(address => bool) public isTransmitter;
    mapping(bytes32 => TransmissionState) public transmissionState;

    event ReportProcessed(
        address indexed receiver, bytes32 indexed workflowExecutionId, bytes2 indexed reportId, bool result
    );

    error InvalidReport();
    error UnauthorizedTransmitter(address sender);
    error AlreadyAttempted(bytes32 transmissionId);

    constructor() Ownable(msg.sender) {
        isTransmitter[msg.sender] = true;
    }

    function setTransmitter(address transmitter, bool allowed) external onlyOwner {
        isTransmitter[transmitter] = allowed;
    }

    function getTransmissionId(address receiver, bytes32 workflowExecutionId, bytes2 reportId)
        public
        pure
        returns (bytes32)
    {
        return keccak256(bytes.concat(bytes20(uint160(receiver)), workflowExecutionId, reportId));
    }

    function report(address receiver, bytes calldata rawReport, bytes calldata, bytes[] calldata) external {
        if (!isTransmitter[msg.sender]) revert UnauthorizedTransmitter(msg.sender);
        if (rawReport.length < METADATA_LENGTH) revert InvalidReport();
        bytes32 executionId = bytes32(rawReport[1:33]);
        bytes2 reportId = bytes2(rawReport[107:109]);
        bytes32 id = getTransmissionId(receiver, executionId, reportId);
        TransmissionState state = transmissionState[id];
        if (state == TransmissionState.Succeeded || state == TransmissionState.InvalidReceiver) {
            revert AlreadyAttempted(id);
        }
        bool success;
        if (!ERC165Checker.supportsInterface(receiver, type(IReceiver).interfaceId)) {
            transmissionState[id] = TransmissionState.InvalidReceiver;
        } else {
            // Recorded before the call, like KeystoneForwarder's transmitter slot: a receiver that
            // re-enters sees the attempt.
            transmissionState[id] = TransmissionState.Failed;
            bytes memory payload = abi.encodeCall(
                IReceiver.onReport, (rawReport[FORWARDER_METADATA_LENGTH:METADATA_LENGTH], rawReport[METADATA_LENGTH:])
            );
            (success,) = receiver.call(payload);
            if (success) transmissionState[id] = TransmissionState.Succeeded;
        }
        emit ReportProcessed(receiver, executionId, reportId, success);
    }
}
