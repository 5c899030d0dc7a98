// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IDtnAi} from "../dtn/IDtnAi.sol";

/// @title LocalDtnRouter
/// @notice A local DTN for devnets and tests: router, session manager, model and node registry in
///         one contract. Simpler inside than the deployed DTN, the same from the outside: sync-based
///         session funding, per-byte charging with caps paid to the node's worker, refunds on close,
///         stranded requests after close, the deployed request-id formula (one-second resolution),
///         msg.value >= callbackGas, gas-limited callbacks that may fail without undoing the answer,
///         fetchResponse reverting while a request is pending, status NA charged like a success with
///         the failure callback, named-node routing that also admits a node of the routing's trust
///         namespaces, redundancy above 1 that charges an answer but never completes, and a model
///         registry listing each model's API and specs.
contract LocalDtnRouter is IDtnAi {
    using SafeERC20 for IERC20;

    struct Session {
        address owner;
        uint256 balance;
    }

    struct Node {
        address worker;
        bool registered;
        string name;
    }

    /// @notice A registered model as `getModelApi` reports it.
    struct ModelApi {
        string name;
        string api;
        string specs;
    }

    struct StoredRequest {
        uint256 sessionId;
        bytes32 modelId;
        address user;
        address caller;
        uint256 callbackGas;
        uint256 createdAt;
        bool completed;
        DtnRouting routing;
        DtnRequest request;
        CallBack callback;
    }

    // Session-manager events and errors, as on the deployed DTN.
    event SessionStarted(uint256 indexed sessionId, address indexed owner, uint256 balance);
    event SessionCharged(uint256 indexed sessionId, uint256 amount, address indexed to);
    event SessionClosed(uint256 indexed sessionId, uint256 remainingBalance);
    event ModelRegistered(bytes32 indexed modelId, string name);
    event ModelApiRegistered(string api, string specs);
    event NodeRegistered(bytes32 indexed nodeId, string name, address indexed worker);
    event NodeNamespaceAdded(bytes32 indexed nodeId, bytes32 indexed namespaceId);

    error InvalidAmount();
    error InvalidSession(uint256 sessionId);
    error Unauthorized(address caller, address owner);
    error InsufficientBalance(uint256 sessionId, uint256 balance, uint256 required);

    address public immutable admin;
    IERC20 private immutable _feeToken;

    /// @notice Fee per byte charged for failure answers, router-wide.
    uint256 public failureFeePerByte;
    /// @notice Tokens held on behalf of open sessions; anything above it is an unassigned deposit.
    uint256 public accountedBalance;
    uint256 public nextSessionId = 1;

    mapping(uint256 => Session) public sessions;
    mapping(bytes32 => bool) public modelExists;
    mapping(bytes32 => string) private _modelNames;
    mapping(bytes32 => string) private _modelApis;
    mapping(string => string) private _apiSpecs;
    bytes32[] private _modelIds;
    mapping(bytes32 => Node) public nodes;
    mapping(bytes32 => mapping(bytes32 => bool)) public nodeInNamespace;
    /// @notice How many nodes hold a trust namespace (a client warns before paying for routing
    ///         nobody serves; the deployed router keeps this in its node manager).
    mapping(bytes32 => uint256) public namespaceNodeCount;
    mapping(bytes32 => mapping(bytes32 => bool)) public nodeResponded;
    /// @notice Answers charged for a request with redundancy above 1 (which never completes).
    mapping(bytes32 => uint256) public redundantAnswers;
    mapping(bytes32 => StoredRequest) private _requests;
    mapping(bytes32 => Response) private _responses;

    modifier onlyAdmin() {
        require(msg.sender == admin, "Only admin");
        _;
    }

    constructor(address feeToken_) {
        admin = msg.sender;
        _feeToken = IERC20(feeToken_);
    }

    // ---------------------------------------------------------------- registry (admin)

    /// @notice Registers an API by its full name (e.g. "api.system.llm-simpletext") and its specs
    ///         ("string[] -> string": the call's input types, then the output type).
    function registerModelApi(string calldata api, string calldata specs) external onlyAdmin {
        require(bytes(api).length > 0, "Empty API name");
        _apiSpecs[api] = specs;
        emit ModelApiRegistered(api, specs);
    }

    /// @notice Registers a model by its full name (e.g. "model.system.openai-gpt-5-nano") with the
    ///         API it implements (registered first).
    function registerModel(string calldata name, string calldata api) external onlyAdmin returns (bytes32 id) {
        require(bytes(_apiSpecs[api]).length > 0, "API not registered");
        id = keccak256(abi.encodePacked(name));
        if (!modelExists[id]) _modelIds.push(id);
        modelExists[id] = true;
        _modelNames[id] = name;
        _modelApis[id] = api;
        emit ModelRegistered(id, name);
    }

    /// @notice Registers a node by its full name ("node.<owner>.<name>"); only `worker` may answer for it.
    function registerNode(string calldata fullName, address worker) external onlyAdmin returns (bytes32 id) {
        require(worker != address(0), "Worker is zero");
        id = keccak256(abi.encodePacked(fullName));
        nodes[id] = Node({worker: worker, registered: true, name: fullName});
        emit NodeRegistered(id, fullName, worker);
    }

    /// @notice Lets a node serve a trust namespace given by its exact hash.
    /// @dev The deployed registry hashes namespace names with encodePacked, while system-trust routing
    ///      uses abi.encode; a node serves system trust only if that exact hash was added here.
    function addNodeToNamespace(bytes32 nodeId, bytes32 namespaceId) external onlyAdmin {
        require(nodes[nodeId].registered, "Node not registered");
        if (!nodeInNamespace[nodeId][namespaceId]) ++namespaceNodeCount[namespaceId];
        nodeInNamespace[nodeId][namespaceId] = true;
        emit NodeNamespaceAdded(nodeId, namespaceId);
    }

    /// @notice Sets the per-byte fee charged for failure answers.
    function setFailureFeePerByte(uint256 fee) external onlyAdmin {
        failureFeePerByte = fee;
    }

    // ---------------------------------------------------------------- IDtnAi

    /// @inheritdoc IDtnAi
    function modelId(string memory modelName) external pure returns (bytes32) {
        return keccak256(abi.encodePacked(modelName));
    }

    /// @inheritdoc IDtnAi
    function feeToken() external view returns (address) {
        return address(_feeToken);
    }

    /// @inheritdoc IDtnAi
    function feeTarget() external view returns (address) {
        return address(this);
    }

    /// @notice The model manager (this contract plays that role too).
    function modelManager() external view returns (address) {
        return address(this);
    }

    /// @notice Every registered model's id, in registration order.
    function getModelIds() external view returns (bytes32[] memory) {
        return _modelIds;
    }

    /// @notice A registered model's full name, API and the API's specs (empty for an unknown id).
    function getModelApi(bytes32 id) external view returns (ModelApi memory) {
        string memory api = _modelApis[id];
        return ModelApi(_modelNames[id], api, _apiSpecs[api]);
    }

    /// @notice The session manager (this contract plays both roles).
    function sessionManager() external view returns (address) {
        return address(this);
    }

    /// @notice The remaining balance of a session (0 for an unknown or closed one).
    function getSessionBalance(uint256 sessionId) external view returns (uint256) {
        return sessions[sessionId].balance;
    }

    /// @inheritdoc IDtnAi
    function startUserSession() external returns (uint256 sessionId) {
        uint256 held = _feeToken.balanceOf(address(this));
        // NOTE: "sync": everything received since the last credit goes to this session, whoever sent it.
        uint256 amount = held > accountedBalance ? held - accountedBalance : 0;
        if (amount == 0) revert InvalidAmount();
        accountedBalance = held;
        sessionId = nextSessionId++;
        sessions[sessionId] = Session({owner: msg.sender, balance: amount});
        emit SessionStarted(sessionId, msg.sender, amount);
    }

    /// @inheritdoc IDtnAi
    function closeUserSession(uint256 sessionId) external {
        Session memory s = sessions[sessionId];
        if (s.owner == address(0)) revert InvalidSession(sessionId);
        if (s.owner != msg.sender) revert Unauthorized(msg.sender, s.owner);
        delete sessions[sessionId];
        accountedBalance -= s.balance;
        if (s.balance > 0) _feeToken.safeTransfer(msg.sender, s.balance);
        emit SessionClosed(sessionId, s.balance);
    }

    /// @inheritdoc IDtnAi
    function request(
        uint256 sessionId,
        bytes32 modelId_,
        DtnRouting memory routing,
        DtnRequest memory dtnRequest,
        CallBack memory callback,
        address user,
        uint256 callbackGas
    ) external payable returns (bytes32 requestId) {
        require(sessions[sessionId].owner == msg.sender, "Session not related to the user");
        require(msg.value >= callbackGas, "Insufficient callback gas");
        require(modelExists[modelId_], "Model does not exist");
        // NOTE: the deployed formula: same session, user and caller in the same second give the same id,
        // and the later request overwrites the earlier one (reopening it if it was answered).
        requestId = keccak256(abi.encodePacked(block.timestamp, sessionId, user, msg.sender));
        StoredRequest storage r = _requests[requestId];
        r.sessionId = sessionId;
        r.modelId = modelId_;
        r.user = user;
        r.caller = msg.sender;
        r.callbackGas = callbackGas;
        r.createdAt = block.timestamp;
        r.completed = false;
        r.routing = routing;
        r.request = dtnRequest;
        r.callback = callback;
        delete _responses[requestId];
        delete redundantAnswers[requestId];
        emit RequestCreated(requestId, sessionId, user);
    }

    /// @inheritdoc IDtnAi
    function respondToRequest(
        bytes32 requestId,
        ResponseStatus status,
        string memory message,
        bytes memory response,
        bytes32 nodeId,
        uint256 requestSize,
        uint256 responseSize
    ) external {
        StoredRequest storage r = _checkResponder(requestId, status, nodeId);
        nodeResponded[requestId][nodeId] = true;
        if (r.routing.redundancy > 1) {
            // NOTE: as the deployed router: with redundancy 2+ the first answer is charged but does
            // not complete the request, a second one reverts, and the request stays pending.
            require(redundantAnswers[requestId] == 0, "No responses found or multiple responses without aggregation");
            redundantAnswers[requestId] = 1;
        }
        _charge(r.sessionId, _fee(r.request, status, requestSize, responseSize), msg.sender);
        if (r.routing.redundancy > 1) return;
        _responses[requestId] = Response(status, message, response, nodeId, block.timestamp);
        r.completed = true;
        _callback(requestId, r, status);
        emit RequestCompleted(requestId, status);
    }

    /// @inheritdoc IDtnAi
    function fetchResponse(bytes32 requestId)
        external
        view
        returns (ResponseStatus status, string memory message, bytes memory response)
    {
        require(_requests[requestId].completed, "Request not completed");
        Response storage res = _responses[requestId];
        return (res.status, res.message, res.response);
    }

    // ---------------------------------------------------------------- views for nodes and clients

    /// @notice Everything a node needs to answer a request (prompt, routing, fees, callback).
    function getRequest(bytes32 requestId) external view returns (StoredRequest memory) {
        return _requests[requestId];
    }

    /// @notice The full stored response, including node id and timestamp.
    function getResponse(bytes32 requestId) external view returns (Response memory) {
        return _responses[requestId];
    }

    // ---------------------------------------------------------------- internals

    function _checkResponder(bytes32 requestId, ResponseStatus status, bytes32 nodeId)
        private
        view
        returns (StoredRequest storage r)
    {
        r = _requests[requestId];
        require(r.createdAt != 0, "Request not found");
        Node storage n = nodes[nodeId];
        require(n.registered, "Node not registered");
        require(n.worker == msg.sender, "Only the node worker can respond");
        require(!nodeResponded[requestId][nodeId], "Node already responded");
        require(!r.completed, "Request already completed");
        require(r.routing.aggregationType == AggregationType.ANY, "Aggregation not supported");
        require(_eligible(r.routing, nodeId), "Node not eligible for this request");
    }

    function _fee(DtnRequest storage req, ResponseStatus status, uint256 requestSize, uint256 responseSize)
        private
        view
        returns (uint256 fee)
    {
        // NOTE: as on the deployed router, NA is charged like a success (and gets the failure callback)
        fee = status != ResponseStatus.FAILURE
            ? requestSize * req.feePerByteReq + responseSize * req.feePerByteRes
            : (requestSize + responseSize) * failureFeePerByte;
        if (fee > req.totalFeePerRes) fee = req.totalFeePerRes;
    }

    function _callback(bytes32 requestId, StoredRequest storage r, ResponseStatus status) private {
        uint256 gasForCallback = r.callbackGas;
        // NOTE: like the deployed router, no check that gasleft() covers the callback: a node that
        // sends too little gas starves it (63/64 rule), SuccessCallbackFailed, and the answer stands.
        bool success = status == ResponseStatus.SUCCESS;
        bytes4 selector = success ? r.callback.success : r.callback.failure;
        (bool ok, bytes memory data) =
            r.callback.target.call{gas: gasForCallback}(abi.encodeWithSelector(selector, requestId));
        if (!ok) {
            if (success) emit SuccessCallbackFailed(requestId, data);
            else emit FailureCallbackFailed(requestId, data);
        }
    }

    function _charge(uint256 sessionId, uint256 fee, address to) private {
        Session storage s = sessions[sessionId];
        // A closed session cannot be charged, so its pending requests can never be answered.
        if (s.owner == address(0)) revert InvalidSession(sessionId);
        if (fee > s.balance) fee = s.balance;
        s.balance -= fee;
        accountedBalance -= fee;
        if (fee > 0) _feeToken.safeTransfer(to, fee);
        emit SessionCharged(sessionId, fee, to);
    }

    /// @dev As the deployed router: a node named in trustedNodeIds, or one holding any of the trust namespaces.
    function _eligible(DtnRouting storage routing, bytes32 nodeId) private view returns (bool) {
        for (uint256 i = 0; i < routing.trustedNodeIds.length; i++) {
            if (routing.trustedNodeIds[i] == nodeId) return true;
        }
        for (uint256 i = 0; i < routing.trustNamespaceIds.length; i++) {
            if (nodeInNamespace[nodeId][routing.trustNamespaceIds[i]]) return true;
        }
        return false;
    }
}
