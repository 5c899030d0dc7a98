// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title IDtnAi
/// @notice The interface a dApp contract uses to call the Deep Trust Network router.
/// @dev ABI-exact with the deployed DTN router: field order matters for struct encoding.
interface IDtnAi {
    enum CallType { IPFS, DIRECT }
    enum AggregationType { ANY, ALL, SELECT_BEST, VOTE, RANK }
    enum ResponseStatus { NA, SUCCESS, FAILURE }

    struct DtnRequest {
        bytes call;
        bytes extraParams;
        CallType calltype;
        uint256 feePerByteReq;
        uint256 feePerByteRes;
        uint256 totalFeePerRes;
    }

    struct DtnRouting {
        bytes32[] trustNamespaceIds;
        bytes32[] trustedNodeIds;
        uint32 redundancy;
        uint8 confidenceLevel;
        AggregationType aggregationType;
    }

    struct CallBack {
        bytes4 success;
        bytes4 failure;
        address target;
    }

    struct Response {
        ResponseStatus status;
        string message;
        bytes response;
        bytes32 nodeId;
        uint256 timestamp;
    }

    event RequestCreated(bytes32 indexed requestId, uint256 indexed sessionId, address indexed user);
    event RequestCompleted(bytes32 indexed requestId, ResponseStatus status);
    event SuccessCallbackFailed(bytes32 indexed requestId, bytes data);
    event FailureCallbackFailed(bytes32 indexed requestId, bytes data);

    /// @notice The id of a model: keccak256(abi.encodePacked(modelName)).
    function modelId(string memory modelName) external view returns (bytes32);

    /// @notice Starts a session funded with every fee token sent to feeTarget() since the last credit.
    function startUserSession() external returns (uint256 sessionId);

    /// @notice Closes a session owned by the caller and refunds its remaining balance to the caller.
    function closeUserSession(uint256 sessionId) external;

    /// @notice Submits a request; msg.value must be at least callbackGas.
    function request(
        uint256 sessionId,
        bytes32 modelId,
        DtnRouting memory routing,
        DtnRequest memory dtnRequest,
        CallBack memory callback,
        address user,
        uint256 callbackGas
    ) external payable returns (bytes32 requestId);

    /// @notice The answer to a completed request; reverts "Request not completed" while pending.
    function fetchResponse(bytes32 requestId)
        external
        view
        returns (ResponseStatus status, string memory message, bytes memory response);

    /// @notice Called by a node's worker to answer a request.
    function respondToRequest(
        bytes32 requestId,
        ResponseStatus status,
        string memory message,
        bytes memory response,
        bytes32 nodeId,
        uint256 requestSize,
        uint256 responseSize
    ) external;

    /// @notice The ERC20 token sessions are paid in.
    function feeToken() external view returns (address);

    /// @notice Where session deposits must be sent before startUserSession().
    function feeTarget() external view returns (address);
}
