// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IDtnAi} from "./dtn/IDtnAi.sol";
import {DtnDefaults} from "./dtn/DtnDefaults.sol";
import {AdvancedSessionStore} from "./AdvancedSessionStore.sol";
import {AdvancedSessionManagerLens} from "./AdvancedSessionManagerLens.sol";

/// @title AdvancedSessionManager
/// @notice Funded, reusable and poolable DTN AI sessions for a dApp's users.
/// @dev Keeps the public API of the documented DTN example and fixes its defects: stable session ids
///      across renewals, refunds that reach owners, owner-only bounded configuration, fees derived
///      from the fee token's decimals, a pending-request deadline fixed by the oldest unanswered
///      request, bounded O(1) maintenance, a pool of revocable, spending-limited usage grants, and
///      callbacks that record each request's outcome.
///
///      A user's "current session" (makeAIRequest, makeAIRequestWithRouting, getOrCreateSession) is
///      the session the user took from the pool if that grant is live and can pay, else the user's
///      active, not-closing session with the highest id whose DTN balance covers one answer's
///      minimum fee (when the router exposes balances).
contract AdvancedSessionManager is AdvancedSessionStore, Ownable2Step, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    // ------------------------------------------------------------------ events

    event SessionCreated(uint256 indexed sessionId, address indexed owner, uint256 balance);
    event SessionClosed(uint256 indexed sessionId, address indexed owner, uint256 refund);
    event SessionRenewed(uint256 indexed sessionId, uint256 newBalance);
    event SessionPooled(uint256 indexed sessionId, address indexed user);
    event SessionTakenFromPool(uint256 indexed sessionId, address indexed user);
    event AIRequestSubmitted(
        bytes32 indexed requestId, uint256 indexed sessionId, address indexed user, uint256 dtnSessionId
    );
    event AIRequestCompleted(
        bytes32 indexed requestId, uint256 indexed sessionId, address indexed user, IDtnAi.ResponseStatus status
    );
    event AIResponseReceived(bytes32 indexed requestId, IDtnAi.ResponseStatus status, string message);
    event AIRequestFailed(bytes32 indexed requestId, string error);
    event RefundCredited(uint256 indexed sessionId, address indexed owner, uint256 amount);
    event RefundWithdrawn(address indexed owner, uint256 amount);
    event CleanupFailed(uint256 indexed sessionId, bytes reason);
    event ConfigUpdated(uint256 minSessionBalance, uint256 maxSessionAge, uint256 sessionPoolSize);
    event FeesUpdated(uint256 feePerByteReq, uint256 feePerByteRes, uint256 totalFeePerRes);
    event RequestTimeoutUpdated(uint256 requestTimeout);
    event GrantDurationUpdated(uint256 grantDuration);
    event SessionClosing(uint256 indexed sessionId, uint256 closableAt);
    event SessionCloseCancelled(uint256 indexed sessionId);
    event SessionCloseSkipped(uint256 indexed sessionId, uint256 retryAfter);
    /// @param reason GRANT_RELEASED, GRANT_REVOKED, GRANT_EXHAUSTED, GRANT_REMOVED (removed/closed) or
    ///        GRANT_EXPIRED (ended by getFromPool after grantDuration).
    event GrantEnded(uint256 indexed sessionId, address indexed user, uint8 reason);
    event SessionRemovedFromPool(uint256 indexed sessionId);
    event Swept(address indexed token, address indexed to, uint256 amount);

    // ------------------------------------------------------------------ errors

    error RequestsPending(uint256 sessionId, uint256 pending, uint256 retryAfter);
    error RequestIdCollision(bytes32 requestId);
    error NotAllowedToUseSession(uint256 sessionId, address caller);
    /// @notice Why a configuration value or a grant limit is refused (the client words each one).
    enum ConfigProblem {
        MinSessionBalanceZero, MinSessionBalanceTooHigh, MaxSessionAgeZero, MaxSessionAgeTooHigh,
        MaxSessionAgeBelowRequestTimeout, PoolSizeTooHigh, PoolSizeBelowPool, MaxFeeZero, MaxFeeTooHigh,
        FeePerByteAboveMaxFee, RequestTimeoutZero, RequestTimeoutTooHigh, RequestTimeoutAboveMaxSessionAge,
        RenounceDisabled, GrantLimitOutOfRange, GrantDurationOutOfRange
    }
    /// @notice Why a routing is refused: no node would ever complete it.
    enum RoutingProblem { AggregationNotAny, NoNamespaceNoNode, RedundancyNotOne, ConfidenceAbove10 }

    error InvalidConfig(ConfigProblem reason);
    error NothingToWithdraw();
    error ZeroAmount();
    error AlreadyHoldsGrant(address user, uint256 sessionId);
    error GrantExhausted(uint256 sessionId, address user, uint256 remaining);
    error GrantExpired(uint256 sessionId, address user, uint256 expiredAt);
    error RoutingNotAllowed(uint256 sessionId);
    error FeeOnTransferToken(uint256 expected, uint256 received);
    error SessionBalanceTooLow(uint256 sessionId, uint256 balance, uint256 required);
    error InvalidRouting(RoutingProblem reason);
    error NotSessionOwner(uint256 sessionId, address caller);
    error SessionNotActive(uint256 sessionId);
    error AlreadyClosing(uint256 sessionId);
    error SessionIsClosing(uint256 sessionId);
    error NotClosing(uint256 sessionId);
    error AlreadyPooled(uint256 sessionId);
    error NotPooled(uint256 sessionId);
    error PoolFull(uint256 maxSize);
    error PoolEmpty();
    error NoGrant(address user);
    error NoSuchGrant(uint256 sessionId, address user);
    error BalanceTooLow(uint256 amount, uint256 minimum);
    error EmptyCall();
    error RequestNotPending(bytes32 requestId);
    error NothingClosed();
    error OutOfGas();
    error TooManySessions();

    // ------------------------------------------------------------------ constants and immutables

    IERC20 public immutable feeToken;
    uint8 public immutable tokenDecimals;
    /// @notice The read-only views (getSession, getConfig, ...), served at this address by fallback().
    address public immutable lens;

    /// @dev Gas a loop keeps for one more step (the costliest close measured is ~110k).
    uint256 private constant STEP_GAS_RESERVE = 200_000;
    /// @notice 1e6 tokens: the largest minSessionBalance.
    uint256 public immutable MAX_MIN_SESSION_BALANCE;
    /// @notice 1000 tokens: the largest totalFeePerRes (and per-byte fees are at most totalFeePerRes).
    uint256 public immutable MAX_TOTAL_FEE_PER_RES;

    // Which id array a position field belongs to.
    uint8 private constant ACTIVE = 0;
    uint8 private constant POOL = 2;
    // Length of abi.encode(string[1]) for an empty prompt: the smallest request DTN can charge for.
    uint256 private constant EMPTY_CALL_BYTES = 128;

    /// @param ai_ The DTN router. Fee defaults are derived from its fee token's decimals.
    constructor(address ai_) Ownable(msg.sender) {
        setAi(ai_);
        feeToken = IERC20(IDtnAi(ai_).feeToken());
        uint8 decimals_ = IERC20Metadata(address(feeToken)).decimals();
        tokenDecimals = decimals_;
        uint256 unit = 10 ** uint256(decimals_);
        _feePerByteReq = unit / 1000; // 0.001 token per byte
        _feePerByteRes = unit / 1000;
        _totalFeePerRes = unit; // 1 token per response at most
        _minBalance = 10 * unit; // 10 tokens
        MAX_MIN_SESSION_BALANCE = _mulSat(unit, 1e6);
        MAX_TOTAL_FEE_PER_RES = _mulSat(unit, 1000);
        lens = address(new AdvancedSessionManagerLens(address(feeToken), decimals_));
    }

    /// @notice Serves the lens's views (see `lens`) at this address. The outer call re-enters this
    ///         contract with staticcall, and only that inner call delegates to the lens: the lens
    ///         runs on this contract's storage in a static context and can never write it.
    fallback() external {
        address target = msg.sender == address(this) ? lens : address(this);
        bool inner = target == lens;
        assembly {
            calldatacopy(0, 0, calldatasize())
            let ok := 0
            switch inner
            case 0 { ok := staticcall(gas(), target, 0, calldatasize(), 0, 0) }
            default { ok := delegatecall(gas(), target, 0, calldatasize(), 0, 0) }
            returndatacopy(0, 0, returndatasize())
            if iszero(ok) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }

    // ------------------------------------------------------------------ sessions

    /// @notice Creates a session funded with `balance` fee-token units taken from the caller.
    /// @dev The caller must have approved this contract for `balance`.
    /// @return sessionId The manager's session id; it stays the same across renewals.
    function createSession(uint256 balance) external nonReentrant returns (uint256 sessionId) {
        return _createSession(msg.sender, balance);
    }

    /// @notice Returns the caller's current session (see the contract notes), creating one funded
    ///         with `minSessionBalance` when there is none that can pay.
    function getOrCreateSession() external nonReentrant returns (uint256 sessionId) {
        sessionId = _sessionFor(msg.sender, _minFee(EMPTY_CALL_BYTES));
        if (sessionId == 0) return _createSession(msg.sender, _minBalance);
        _touch(sessionId);
    }

    /// @notice Adds `additionalBalance` to a session. DTN cannot top up a session, so the DTN session
    ///         is closed and a new one is funded with its refund plus the new amount; the id stays.
    function renewSession(uint256 sessionId, uint256 additionalBalance) external nonReentrant {
        Session storage s = _ownedActive(sessionId);
        if (additionalBalance == 0) revert ZeroAmount();
        // New money does not go into a session on its way out: cancelClose first.
        if (s.closing) revert SessionIsClosing(sessionId);
        _requireNoPending(sessionId);

        _pullExact(msg.sender, additionalBalance);
        uint256 refund = _closeDtnSession(sessionId);
        uint256 newBalance = refund + additionalBalance;
        // Transfer and start in one transaction: DTN credits unassigned deposits to the next starter.
        _sendExact(ai.feeTarget(), newBalance);
        s.dtnSessionId = SafeCast.toUint128(ai.startUserSession());
        _clearPending(s);
        s.balance = SafeCast.toUint128(newBalance);
        _touch(sessionId);
        emit SessionRenewed(sessionId, newBalance);
    }

    /// @notice Closes a session of the caller and sends DTN's refund to the caller.
    /// @dev Reverts RequestsPending until the deadline of the oldest unanswered request.
    function closeSession(uint256 sessionId) external nonReentrant {
        _closeOwned(sessionId);
    }

    /// @notice Closes every active session of the caller that can be closed now; for each one with
    ///         pending requests before their deadline it emits SessionCloseSkipped instead.
    ///         Within MAINTENANCE_GAS_BUDGET: when sessions are left unvisited, call it again.
    function closeAllSessions() external nonReentrant {
        uint256 start = gasleft();
        uint256 id = _userActive[msg.sender].head;
        while (id != 0 && _withinBudget(start, _MAINTENANCE_GAS_BUDGET)) {
            uint256 next = _sessions[id].userNext;
            (bool blocked, uint256 retryAfter) = _pendingBlock(_sessions[id]);
            if (blocked) emit SessionCloseSkipped(id, retryAfter);
            else _closeOwned(id);
            id = next;
        }
    }

    /// @notice Starts closing a session: from now on only the owner may make requests in it, it
    ///         leaves the pool and any taker's grant on it ends. Emits SessionClosing with the time
    ///         from which closeSession succeeds.
    function beginClose(uint256 sessionId) external {
        Session storage s = _ownedActive(sessionId);
        if (s.closing) revert AlreadyClosing(sessionId);
        s.closing = true;
        _unpool(sessionId);
        (bool blocked, uint256 retryAfter) = _pendingBlock(s);
        emit SessionClosing(sessionId, blocked ? retryAfter : block.timestamp);
    }

    /// @notice Undoes beginClose: others may use the session again with a grant, and it may be renewed
    ///         and offered again (it does not return to the pool by itself).
    function cancelClose(uint256 sessionId) external {
        Session storage s = _ownedActive(sessionId);
        if (!s.closing) revert NotClosing(sessionId);
        s.closing = false;
        emit SessionCloseCancelled(sessionId);
    }

    // ------------------------------------------------------------------ requests

    /// @notice Makes an AI request from the caller's current session (created when there is none).
    /// @param routing Trust namespace ids; empty means system trust.
    /// @dev msg.value is forwarded to DTN and used as the callback gas (a few hundred thousand wei).
    function makeAIRequest(string memory prompt, string memory model, bytes32[] memory routing)
        public
        payable
        nonReentrant
        returns (bytes32)
    {
        IDtnAi.DtnRouting memory r = routing.length == 0 ? DtnDefaults.defaultSystemTrust() : DtnDefaults.namespaces(routing);
        bytes memory call_ = abi.encode(DtnDefaults.singleArray(prompt));
        return _request(_currentOrNewSession(call_.length), call_, IDtnAi.CallType.DIRECT, model, r, false);
    }

    /// @notice Makes an AI request with full routing (e.g. to named nodes) from the caller's current session.
    function makeAIRequestWithRouting(string memory prompt, string memory model, IDtnAi.DtnRouting memory routing)
        external
        payable
        nonReentrant
        returns (bytes32)
    {
        bytes memory call_ = abi.encode(DtnDefaults.singleArray(prompt));
        return _request(_currentOrNewSession(call_.length), call_, IDtnAi.CallType.DIRECT, model, routing, false);
    }

    /// @notice Makes an AI request from a given session the caller owns or holds a pool grant on.
    /// @dev Lets a client fan requests out over several sessions (one request per session, user and second).
    function makeAIRequestInSession(
        uint256 sessionId,
        string memory prompt,
        string memory model,
        IDtnAi.DtnRouting memory routing
    ) external payable nonReentrant returns (bytes32) {
        return _request(sessionId, abi.encode(DtnDefaults.singleArray(prompt)), IDtnAi.CallType.DIRECT, model, routing, true);
    }

    /// @notice Makes an AI request with the caller's own encoded call (the model API's input types,
    ///         e.g. `abi.encode(string[], uint64, uint64)` for an image), sent to DTN unchanged with
    ///         `calltype` (IPFS: the node answers the CID of the output stored on IPFS; DIRECT: the
    ///         output itself). Fees and balance checks count the call's bytes.
    /// @param sessionId 0 = the caller's current session (created when there is none), as makeAIRequest;
    ///        otherwise a session the caller owns or holds a pool grant on, as makeAIRequestInSession.
    function makeAIRequestWithCall(
        uint256 sessionId,
        bytes calldata encodedCall,
        IDtnAi.CallType calltype,
        string calldata model,
        IDtnAi.DtnRouting calldata routing
    ) external payable nonReentrant returns (bytes32 requestId) {
        if (encodedCall.length == 0) revert EmptyCall();
        if (sessionId == 0) return _request(_currentOrNewSession(encodedCall.length), encodedCall, calltype, model, routing, false);
        return _request(sessionId, encodedCall, calltype, model, routing, true);
    }

    /// @notice DTN callback for a successful answer.
    function onSuccess(bytes32 requestId) external onlyDtn {
        _finishRequest(requestId);
    }

    /// @notice DTN callback for a failure answer.
    function onError(bytes32 requestId) external onlyDtn {
        _finishRequest(requestId);
    }

    /// @notice Records the outcome of an answered request whose callback failed (e.g. ran out of gas).
    function settleRequest(bytes32 requestId) external {
        Request storage info = _requests[requestId];
        if (info.status != RequestStatus.Pending) revert RequestNotPending(requestId);
        (IDtnAi.ResponseStatus status,,) = ai.fetchResponse(requestId);
        _record(requestId, info, status);
    }

    /// @notice settleRequest for each answered pending request in `ids`; skips the others.
    /// @return settled How many were settled.
    function settleRequests(bytes32[] calldata ids) external returns (uint256 settled) {
        for (uint256 i = 0; i < ids.length; i++) {
            Request storage info = _requests[ids[i]];
            if (info.status != RequestStatus.Pending) continue;
            uint256 gasBefore = gasleft();
            try ai.fetchResponse(ids[i]) returns (IDtnAi.ResponseStatus status, string memory, bytes memory) {
                if (status == IDtnAi.ResponseStatus.NA) continue;
                _record(ids[i], info, status);
                unchecked { settled++; }
            } catch {
                // An unanswered id is skipped, but running out of gas must revert: otherwise a gas
                // estimate finds the limit at which every fetch fails and the tx settles nothing.
                if (gasleft() <= gasBefore / 64) revert OutOfGas();
            }
        }
    }

    // ------------------------------------------------------------------ pool

    /// @notice Offers one of the caller's active sessions in the shared pool. Takers may spend up to
    ///         10 answers' worth (10 * totalFeePerRes) in all and may route by trust namespace only.
    function addToPool(uint256 sessionId) external {
        _addToPool(sessionId, 10 * _totalFeePerRes, false);
    }

    /// @notice Offers a session in the pool with a budget (token units, each taker request reserves
    ///         totalFeePerRes of it; the offer's total across every grant and re-take: a spent offer
    ///         leaves the pool) and whether takers may name trusted node ids.
    function addToPoolWithLimit(uint256 sessionId, uint256 grantLimit, bool allowNodeRouting) external {
        _addToPool(sessionId, grantLimit, allowNodeRouting);
    }

    /// @notice Takes the newest pooled session: the caller may spend from it, within the offer's budget,
    ///         for grantDuration. Funds and refunds stay with the session owner. One grant per address
    ///         at a time. With the pool empty, sessions whose grants expired return to it first.
    function getFromPool() external nonReentrant returns (uint256 sessionId) {
        Grant storage held = _grants[msg.sender];
        if (held.sessionId != 0) {
            if (block.timestamp < _grantExpiry(held)) revert AlreadyHoldsGrant(msg.sender, held.sessionId);
            _endGrant(held.sessionId, _GRANT_EXPIRED);
        }
        // Grants expire in take order, so only the oldest needs looking at: no keeper, O(1) per grant.
        while (_sessionPool.length == 0) {
            uint256 oldest = _grantHead;
            if (oldest == 0 || block.timestamp < _grantExpiry(_grants[_sessions[oldest].taker])) revert PoolEmpty();
            _endGrant(oldest, _GRANT_EXPIRED);
        }
        sessionId = _sessionPool[_sessionPool.length - 1];
        _removeFrom(_sessionPool, POOL, sessionId);
        Session storage s = _sessions[sessionId];
        s.taker = msg.sender;
        _grantAppend(msg.sender, sessionId);
        _touch(sessionId);
        emit SessionTakenFromPool(sessionId, msg.sender);
    }

    /// @notice Ends the caller's grant; the session returns to the pool if there is room.
    function releaseGrant() external {
        uint256 sessionId = _grants[msg.sender].sessionId;
        if (sessionId == 0) revert NoGrant(msg.sender);
        _endGrant(sessionId, _GRANT_RELEASED);
    }

    /// @notice Ends `user`'s grant on a session of the caller. The session stays out of the pool (else the
    ///         revoked taker could take it straight back); addToPool offers it again.
    function revokeGrant(uint256 sessionId, address user) external {
        Session storage s = _ownedActive(sessionId);
        if (user == address(0) || s.taker != user) revert NoSuchGrant(sessionId, user);
        _endGrant(sessionId, _GRANT_REVOKED);
    }

    /// @notice Takes a session of the caller out of the pool and ends its current grant.
    function removeFromPool(uint256 sessionId) external {
        Session storage s = _ownedActive(sessionId);
        if (s.poolPos == 0 && s.taker == address(0)) revert NotPooled(sessionId);
        _unpool(sessionId);
    }

    // ------------------------------------------------------------------ maintenance

    /// @notice Closes up to DEFAULT_CLEANUP_BATCH sessions idle for longer than maxSessionAge, within
    ///         UPKEEP_GAS_BUDGET.
    /// @return closed How many sessions were closed.
    function cleanupOldSessions() external nonReentrant returns (uint256 closed) {
        return _cleanup(_DEFAULT_CLEANUP_BATCH, _UPKEEP_GAS_BUDGET);
    }

    /// @notice Closes up to `maxSessions` idle sessions within MAINTENANCE_GAS_BUDGET (one transaction
    ///         stays under 2^24 gas: call again while getIdleSessions lists more); refunds are
    ///         credited to their owners.
    /// @dev A session DTN refuses to close keeps its place and is tried first by the next call.
    function cleanupOldSessionsUpTo(uint256 maxSessions) external nonReentrant returns (uint256 closed) {
        if (maxSessions == 0) revert ZeroAmount();
        return _cleanup(maxSessions, _MAINTENANCE_GAS_BUDGET);
    }

    /// @notice Chainlink Automation (AutomationCompatibleInterface): true when cleanup would close a
    ///         session now (the least recently used one is idle). performData is empty.
    function checkUpkeep(bytes calldata) external view returns (bool upkeepNeeded, bytes memory performData) {
        uint256 head = _lruHead;
        upkeepNeeded = head != 0 && _isIdle(head);
    }

    /// @notice Chainlink Automation: cleanupOldSessions() for any caller. performData is ignored
    ///         (untrusted): which sessions are idle is decided here, at most DEFAULT_CLEANUP_BATCH
    ///         per call and within UPKEEP_GAS_BUDGET, so its worst case needs under 4,500,000 gas. Reverts "Nothing closed" when it closed none (nothing idle, or DTN refused all).
    function performUpkeep(bytes calldata) external nonReentrant {
        if (_cleanup(_DEFAULT_CLEANUP_BATCH, _UPKEEP_GAS_BUDGET) == 0) revert NothingClosed();
    }

    /// @notice Pays out the caller's refunds credited by cleanup.
    function withdrawRefunds() external nonReentrant {
        uint256 amount = _claimableRefunds[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        _claimableRefunds[msg.sender] = 0;
        _totalClaimable -= amount;
        feeToken.safeTransfer(msg.sender, amount);
        emit RefundWithdrawn(msg.sender, amount);
    }

    // ------------------------------------------------------------------ configuration (owner)

    /// @notice Sets the minimum session balance (token units, at most MAX_MIN_SESSION_BALANCE), idle
    ///         age (seconds, at most MAX_SESSION_AGE) and pool size (at most MAX_POOL_SIZE).
    function updateConfig(uint256 _minSessionBalance, uint256 _maxSessionAge, uint256 _sessionPoolSize)
        external
        onlyOwner
    {
        if (_minSessionBalance == 0) revert InvalidConfig(ConfigProblem.MinSessionBalanceZero);
        if (_minSessionBalance > MAX_MIN_SESSION_BALANCE) revert InvalidConfig(ConfigProblem.MinSessionBalanceTooHigh);
        if (_maxSessionAge == 0) revert InvalidConfig(ConfigProblem.MaxSessionAgeZero);
        if (_maxSessionAge > _MAX_SESSION_AGE) revert InvalidConfig(ConfigProblem.MaxSessionAgeTooHigh);
        if (_maxSessionAge < _requestTimeout) revert InvalidConfig(ConfigProblem.MaxSessionAgeBelowRequestTimeout);
        if (_sessionPoolSize > _MAX_POOL_SIZE) revert InvalidConfig(ConfigProblem.PoolSizeTooHigh);
        if (_sessionPoolSize < _sessionPool.length) revert InvalidConfig(ConfigProblem.PoolSizeBelowPool);
        _minBalance = _minSessionBalance;
        _maxAge = _maxSessionAge;
        _poolSize = _sessionPoolSize;
        emit ConfigUpdated(_minSessionBalance, _maxSessionAge, _sessionPoolSize);
    }

    /// @notice Sets the fees offered to DTN nodes per request (token units): totalFeePerRes at most
    ///         MAX_TOTAL_FEE_PER_RES, each per-byte fee at most totalFeePerRes.
    function setFees(uint256 feePerByteReq_, uint256 feePerByteRes_, uint256 totalFeePerRes_) external onlyOwner {
        if (totalFeePerRes_ == 0) revert InvalidConfig(ConfigProblem.MaxFeeZero);
        if (totalFeePerRes_ > MAX_TOTAL_FEE_PER_RES) revert InvalidConfig(ConfigProblem.MaxFeeTooHigh);
        if (feePerByteReq_ > totalFeePerRes_ || feePerByteRes_ > totalFeePerRes_) {
            revert InvalidConfig(ConfigProblem.FeePerByteAboveMaxFee);
        }
        _feePerByteReq = feePerByteReq_;
        _feePerByteRes = feePerByteRes_;
        _totalFeePerRes = totalFeePerRes_;
        emit FeesUpdated(feePerByteReq_, feePerByteRes_, totalFeePerRes_);
    }

    /// @notice Sets how long pending requests block close and renew (at most MAX_REQUEST_TIMEOUT and
    ///         maxSessionAge). Lowering it shortens pending deadlines; raising it never extends them,
    ///         not even back to what they were before a lowering.
    function setRequestTimeout(uint256 requestTimeout_) external onlyOwner {
        if (requestTimeout_ == 0) revert InvalidConfig(ConfigProblem.RequestTimeoutZero);
        if (requestTimeout_ > _MAX_REQUEST_TIMEOUT) revert InvalidConfig(ConfigProblem.RequestTimeoutTooHigh);
        if (requestTimeout_ > _maxAge) revert InvalidConfig(ConfigProblem.RequestTimeoutAboveMaxSessionAge);
        uint32 old = _requestTimeout;
        if (requestTimeout_ > old) {
            if (_timeoutRaisedAt == 0 || old < _timeoutFloor) _timeoutFloor = old;
            _timeoutRaisedAt = uint48(block.timestamp);
        }
        _requestTimeout = uint32(requestTimeout_);
        emit RequestTimeoutUpdated(requestTimeout_);
    }

    /// @notice Sets how long a pool grant lasts (MIN_GRANT_DURATION..MAX_GRANT_DURATION), counted from
    ///         each take; it applies to live grants too, so grants keep expiring in take order.
    function setGrantDuration(uint256 grantDuration_) external onlyOwner {
        if (grantDuration_ < _MIN_GRANT_DURATION || grantDuration_ > _MAX_GRANT_DURATION) {
            revert InvalidConfig(ConfigProblem.GrantDurationOutOfRange);
        }
        _grantDuration = uint32(grantDuration_);
        emit GrantDurationUpdated(grantDuration_);
    }

    /// @notice Sends tokens nobody is owed to `to`: for the fee token its balance minus totalClaimable,
    ///         for any other token everything this contract holds.
    function sweep(address token, address to) external onlyOwner nonReentrant {
        uint256 held = IERC20(token).balanceOf(address(this));
        uint256 amount = held;
        if (token == address(feeToken)) amount = held > _totalClaimable ? held - _totalClaimable : 0;
        if (amount == 0) revert NothingToWithdraw();
        IERC20(token).safeTransfer(to, amount);
        emit Swept(token, to, amount);
    }

    /// @notice Disabled: without an owner, configuration and sweep would be frozen for good.
    function renounceOwnership() public pure override {
        revert InvalidConfig(ConfigProblem.RenounceDisabled);
    }

    // ------------------------------------------------------------------ internals: sessions

    function _createSession(address owner_, uint256 amount) private returns (uint256 sessionId) {
        if (amount < _minBalance) revert BalanceTooLow(amount, _minBalance);
        // Transfer and start in one transaction: DTN credits unassigned deposits to the next starter.
        address target = ai.feeTarget();
        uint256 before = _held(target);
        feeToken.safeTransferFrom(owner_, target, amount);
        _requireReceived(amount, _held(target) - before);
        uint256 dtnSessionId = ai.startUserSession();

        sessionId = _nextSessionId++;
        if (sessionId > type(uint40).max) revert TooManySessions(); // ids are stored as uint40
        Session storage s = _sessions[sessionId];
        s.owner = owner_;
        s.lastUsed = uint64(block.timestamp);
        s.active = true;
        s.balance = SafeCast.toUint128(amount);
        s.dtnSessionId = SafeCast.toUint128(dtnSessionId);
        _userSessions[owner_].push(sessionId);
        _pushTo(_activeSessions, ACTIVE, sessionId);
        _userAppend(owner_, sessionId);
        _lruAppend(sessionId);
        emit SessionCreated(sessionId, owner_, amount);
    }

    /// @dev The user's current session that can pay `need` (see the contract notes), or 0.
    function _sessionFor(address user, uint256 need) private view returns (uint256) {
        Grant storage g = _grants[user];
        uint256 granted = g.sessionId;
        if (granted != 0 && block.timestamp < _grantExpiry(g) && _sessions[granted].offerBudget >= _totalFeePerRes
            && _canPay(_sessions[granted], need)) {
            return granted;
        }
        for (uint256 id = _userActive[user].tail; id != 0; id = _sessions[id].userPrev) {
            Session storage s = _sessions[id];
            if (!s.closing && _canPay(s, need)) return id;
        }
        return 0;
    }

    function _canPay(Session storage s, uint256 need) private view returns (bool) {
        (bool ok, uint256 b) = _dtnBalance(s.dtnSessionId);
        return !ok || b >= need;
    }

    /// @dev The least one answer can cost: the request's bytes at feePerByteReq, capped like DTN's
    ///      charge at totalFeePerRes, at least 1 unit.
    function _minFee(uint256 callBytes) private view returns (uint256 fee) {
        fee = callBytes * _feePerByteReq;
        if (fee > _totalFeePerRes) fee = _totalFeePerRes;
        if (fee == 0) fee = 1;
    }

    function _currentOrNewSession(uint256 callBytes) private returns (uint256 sessionId) {
        sessionId = _sessionFor(msg.sender, _minFee(callBytes));
        if (sessionId == 0) sessionId = _createSession(msg.sender, _minBalance);
    }

    function _ownedActive(uint256 sessionId) private view returns (Session storage s) {
        s = _sessions[sessionId];
        if (s.owner != msg.sender) revert NotSessionOwner(sessionId, msg.sender);
        if (!s.active) revert SessionNotActive(sessionId);
    }

    function _closeOwned(uint256 sessionId) private {
        Session storage s = _ownedActive(sessionId);
        _requireNoPending(sessionId);
        uint256 refund = _closeDtnSession(sessionId);
        _deactivate(sessionId);
        // Push the refund; if the owner cannot receive (e.g. a blocked address), credit it instead.
        if (refund > 0 && !feeToken.trySafeTransfer(msg.sender, refund)) _credit(sessionId, msg.sender, refund);
        emit SessionClosed(sessionId, msg.sender, refund);
    }

    /// @dev Closes the DTN session and returns exactly what DTN refunded (measured, not assumed).
    function _closeDtnSession(uint256 sessionId) private returns (uint256 refund) {
        uint256 before = _held(address(this));
        ai.closeUserSession(_sessions[sessionId].dtnSessionId);
        refund = _held(address(this)) - before;
    }

    function _deactivate(uint256 sessionId) private {
        Session storage s = _sessions[sessionId];
        s.active = false;
        s.balance = 0;
        // The streak's deadline fields mean nothing once the count is 0 (views show them only while
        // requests are pending): leaving them saves a storage write on every close.
        s.pendingRequests = 0;
        _removeFrom(_activeSessions, ACTIVE, sessionId);
        _userRemove(s.owner, sessionId);
        _lruRemove(sessionId);
        if (s.poolPos != 0) _removeFrom(_sessionPool, POOL, sessionId);
        if (s.taker != address(0)) _endGrant(sessionId, _GRANT_REMOVED);
    }

    function _credit(uint256 sessionId, address owner_, uint256 amount) private {
        _claimableRefunds[owner_] += amount;
        _totalClaimable += amount;
        emit RefundCredited(sessionId, owner_, amount);
    }

    function _pendingBlock(Session storage s) private view returns (bool blocked, uint256 retryAfter) {
        if (s.pendingRequests == 0) return (false, 0);
        retryAfter = _deadline(s);
        blocked = block.timestamp < retryAfter;
    }

    function _requireNoPending(uint256 sessionId) private view {
        Session storage s = _sessions[sessionId];
        (bool blocked, uint256 retryAfter) = _pendingBlock(s);
        if (blocked) revert RequestsPending(sessionId, s.pendingRequests, retryAfter);
    }

    function _clearPending(Session storage s) private {
        s.pendingRequests = 0;
        s.closableAt = 0;
        s.pendingSince = 0;
    }

    /// @dev Closes idle sessions, least recently used first, until `maxSessions` are visited or
    ///      `gasBudget` is spent (see _withinBudget).
    function _cleanup(uint256 maxSessions, uint256 gasBudget) private returns (uint256 closed) {
        uint256 start = gasleft();
        uint256 visited;
        uint256 id = _lruHead;
        while (id != 0 && visited < maxSessions && _withinBudget(start, gasBudget) && _isIdle(id)) {
            unchecked { visited++; }
            Session storage s = _sessions[id];
            uint256 next = s.lruNext;
            uint256 before = _held(address(this));
            // One session DTN refuses to close must not block everyone else's cleanup. It keeps its
            // place (it is still idle), so the next call tries it first again.
            try ai.closeUserSession(s.dtnSessionId) {
                uint256 refund = _held(address(this)) - before;
                address owner_ = s.owner;
                _deactivate(id);
                if (refund > 0) _credit(id, owner_, refund);
                emit SessionClosed(id, owner_, refund);
                unchecked { closed++; }
            } catch (bytes memory reason) {
                emit CleanupFailed(id, reason);
            }
            id = next;
        }
    }

    /// @dev Whether a loop that began with `start` gas may take one more step. Bounded by gas spent,
    ///      not by gas left, so the work does not depend on the caller's gas limit and an estimate is
    ///      exact; a limit too low for the work reverts OutOfGas instead of doing less.
    function _withinBudget(uint256 start, uint256 gasBudget) private view returns (bool) {
        uint256 left = gasleft();
        if (left < STEP_GAS_RESERVE) revert OutOfGas();
        return start - left < gasBudget;
    }

    // ------------------------------------------------------------------ internals: tokens in

    /// @dev Takes exactly `amount` from `from` into this contract, or reverts FeeOnTransferToken.
    function _pullExact(address from, uint256 amount) private {
        uint256 before = _held(address(this));
        feeToken.safeTransferFrom(from, address(this), amount);
        _requireReceived(amount, _held(address(this)) - before);
    }

    /// @dev Sends `amount` to `to` and checks that all of it arrived.
    function _sendExact(address to, uint256 amount) private {
        uint256 before = _held(to);
        feeToken.safeTransfer(to, amount);
        _requireReceived(amount, _held(to) - before);
    }

    /// @dev The fee-token balance of `who`: one call site keeps the bytecode under the size limit.
    function _held(address who) private view returns (uint256) {
        return feeToken.balanceOf(who);
    }

    function _requireReceived(uint256 expected, uint256 received) private pure {
        if (received != expected) revert FeeOnTransferToken(expected, received);
    }

    // ------------------------------------------------------------------ internals: pool

    function _addToPool(uint256 sessionId, uint256 grantLimit, bool allowNodeRouting) private {
        Session storage s = _ownedActive(sessionId);
        if (s.closing) revert SessionIsClosing(sessionId);
        if (s.poolPos != 0 || s.taker != address(0)) revert AlreadyPooled(sessionId);
        if (_sessionPool.length >= _poolSize) revert PoolFull(_poolSize);
        if (grantLimit < _totalFeePerRes || grantLimit > type(uint96).max) revert InvalidConfig(ConfigProblem.GrantLimitOutOfRange);
        s.offerBudget = uint96(grantLimit);
        s.allowNodeRouting = allowNodeRouting;
        _pushTo(_sessionPool, POOL, sessionId);
        emit SessionPooled(sessionId, msg.sender);
    }

    /// @dev Out of the pool and no grant: removeFromPool, beginClose.
    function _unpool(uint256 sessionId) private {
        Session storage s = _sessions[sessionId];
        bool wasOffered = s.poolPos != 0 || s.taker != address(0);
        if (s.poolPos != 0) _removeFrom(_sessionPool, POOL, sessionId);
        if (s.taker != address(0)) _endGrant(sessionId, _GRANT_REMOVED);
        if (wasOffered) emit SessionRemovedFromPool(sessionId);
    }

    /// @dev Ends the session's grant; a released or expired session goes back to the pool when it is
    ///      active, not closing, its offer can pay one more answer and the pool has room. A spent offer
    ///      leaves the pool; revoked and removed ones stay out.
    function _endGrant(uint256 sessionId, uint8 reason) private {
        Session storage s = _sessions[sessionId];
        address taker = s.taker;
        _grantRemove(taker);
        s.taker = address(0);
        emit GrantEnded(sessionId, taker, reason);
        if ((reason == _GRANT_RELEASED || reason == _GRANT_EXPIRED) && s.offerBudget >= _totalFeePerRes && s.active && !s.closing
            && _sessionPool.length < _poolSize) {
            _pushTo(_sessionPool, POOL, sessionId);
        }
    }

    /// @dev A taker's request: allowed routing, and totalFeePerRes reserved from the offer's budget,
    ///      which no release and re-take refills.
    function _spendGrant(uint256 sessionId, Session storage s, IDtnAi.DtnRouting memory routing) private {
        Grant storage g = _grants[msg.sender];
        if (g.sessionId != sessionId || s.closing) revert NotAllowedToUseSession(sessionId, msg.sender);
        // Pending requests of an expired grant still settle; new ones are refused.
        if (block.timestamp >= _grantExpiry(g)) revert GrantExpired(sessionId, msg.sender, _grantExpiry(g));
        if (routing.trustedNodeIds.length > 0 && !s.allowNodeRouting) revert RoutingNotAllowed(sessionId);
        uint256 fee = _totalFeePerRes;
        uint256 budget = s.offerBudget;
        if (budget < fee) revert GrantExhausted(sessionId, msg.sender, budget);
        budget -= fee;
        s.offerBudget = uint96(budget);
        if (budget < fee) _endGrant(sessionId, _GRANT_EXHAUSTED);
    }

    // ------------------------------------------------------------------ internals: requests

    /// @dev Refuses routing the router accepts but no node would ever answer.
    function _checkRouting(IDtnAi.DtnRouting memory routing) private pure {
        if (routing.aggregationType != IDtnAi.AggregationType.ANY) revert InvalidRouting(RoutingProblem.AggregationNotAny);
        if (routing.trustNamespaceIds.length == 0 && routing.trustedNodeIds.length == 0) revert InvalidRouting(RoutingProblem.NoNamespaceNoNode);
        // The real router cannot complete redundancy 2 or more: the second answer reverts (DTN-FACTS.md).
        if (routing.redundancy != 1) revert InvalidRouting(RoutingProblem.RedundancyNotOne);
        if (routing.confidenceLevel > 10) revert InvalidRouting(RoutingProblem.ConfidenceAbove10);
    }

    function _request(
        uint256 sessionId,
        bytes memory call_,
        IDtnAi.CallType calltype,
        string memory model,
        IDtnAi.DtnRouting memory routing,
        bool checkBalance
    ) private returns (bytes32 requestId) {
        Session storage s = _sessions[sessionId];
        if (!s.active) revert SessionNotActive(sessionId);
        _checkRouting(routing);
        if (s.owner != msg.sender) _spendGrant(sessionId, s, routing);
        uint256 dtnSessionId = s.dtnSessionId;
        if (checkBalance) {
            (bool ok, uint256 b) = _dtnBalance(dtnSessionId);
            uint256 need = _minFee(call_.length);
            if (ok && b < need) revert SessionBalanceTooLow(sessionId, b, need);
        }
        requestId = ai.request{value: msg.value}(
            dtnSessionId,
            keccak256(abi.encodePacked(model)),
            routing,
            IDtnAi.DtnRequest({
                call: call_,
                extraParams: "",
                calltype: calltype,
                feePerByteReq: _feePerByteReq,
                feePerByteRes: _feePerByteRes,
                totalFeePerRes: _totalFeePerRes
            }),
            IDtnAi.CallBack(this.onSuccess.selector, this.onError.selector, address(this)),
            msg.sender,
            msg.value
        );
        // DTN ids have one-second resolution: a second request of this session and user in the same
        // second would overwrite the first on DTN. Reverting undoes that overwrite.
        if (_requests[requestId].status != RequestStatus.None) revert RequestIdCollision(requestId);
        _requests[requestId] = Request({
            user: msg.sender,
            createdAt: uint40(block.timestamp),
            status: RequestStatus.Pending,
            sessionId: uint48(sessionId),
            dtnSessionId: dtnSessionId
        });
        _userRequests[msg.sender].push(requestId);
        // The deadline is fixed by the oldest unanswered request: later ones never move it. A streak
        // restarted within requestTimeout of the previous deadline keeps that deadline, so nobody can
        // hold the owner's close by settling and requesting again in one transaction: from the owner's
        // first blocked attempt, close succeeds within requestTimeout.
        if (s.pendingRequests == 0 && block.timestamp >= _addSat(_deadline(s), _requestTimeout)) {
            s.pendingSince = uint48(block.timestamp);
            s.closableAt = uint48(_addSat(block.timestamp, _requestTimeout));
        }
        s.pendingRequests += 1;
        s.lastRequestAt = uint64(block.timestamp);
        unchecked { s.requestCount += 1; } // uint64: not reachable
        _touch(sessionId);
        emit AIRequestSubmitted(requestId, sessionId, msg.sender, dtnSessionId);
    }

    function _finishRequest(bytes32 requestId) private {
        Request storage info = _requests[requestId];
        if (info.status != RequestStatus.Pending) return; // not ours, or already settled
        IDtnAi.ResponseStatus status;
        string memory message;
        try ai.fetchResponse(requestId) returns (IDtnAi.ResponseStatus s_, string memory m_, bytes memory) {
            (status, message) = (s_, m_);
        } catch {
            status = msg.sig == this.onSuccess.selector ? IDtnAi.ResponseStatus.SUCCESS : IDtnAi.ResponseStatus.FAILURE;
        }
        _record(requestId, info, status);
        if (status == IDtnAi.ResponseStatus.SUCCESS) emit AIResponseReceived(requestId, status, message);
        else emit AIRequestFailed(requestId, message);
    }

    function _record(bytes32 requestId, Request storage info, IDtnAi.ResponseStatus status) private {
        info.status = status == IDtnAi.ResponseStatus.SUCCESS ? RequestStatus.Succeeded : RequestStatus.Failed;
        Session storage st = _sessions[info.sessionId];
        // A renewal or close resets the count. A request of an earlier DTN session can still be settled
        // (answered before the renewal, callback failed); it must not uncount a request of the new one.
        // The streak's deadline stays when the count reaches 0 (see _request).
        if (info.dtnSessionId == st.dtnSessionId && st.pendingRequests > 0) st.pendingRequests -= 1;
        emit AIRequestCompleted(requestId, info.sessionId, info.user, status);
    }

    // ------------------------------------------------------------------ internals: arithmetic

    function _mulSat(uint256 a, uint256 b) private pure returns (uint256) {
        unchecked {
            if (a == 0) return 0;
            uint256 c = a * b;
            return c / a == b ? c : type(uint256).max;
        }
    }

    // ------------------------------------------------------------------ internals: sets and lists

    /// @dev Records `taker`'s grant on `sessionId` at the tail of the grant list (newest).
    function _grantAppend(address taker, uint256 sessionId) private {
        uint40 tail = _grantTail;
        _grants[taker] = Grant(uint40(sessionId), uint40(block.timestamp), tail, 0);
        if (tail == 0) _grantHead = uint40(sessionId);
        else _grants[_sessions[tail].taker].next = uint40(sessionId);
        _grantTail = uint40(sessionId);
    }

    /// @dev Deletes `taker`'s grant and unlinks it from the grant list.
    function _grantRemove(address taker) private {
        Grant storage g = _grants[taker];
        uint40 prev = g.prev;
        uint40 next = g.next;
        if (prev == 0) _grantHead = next;
        else _grants[_sessions[prev].taker].next = next;
        if (next == 0) _grantTail = prev;
        else _grants[_sessions[next].taker].prev = prev;
        delete _grants[taker];
    }

    function _touch(uint256 sessionId) private {
        _sessions[sessionId].lastUsed = uint64(block.timestamp);
        if (_lruTail != sessionId) {
            _lruRemove(sessionId);
            _lruAppend(sessionId);
        }
    }

    function _lruAppend(uint256 id) private {
        uint256 tail = _lruTail;
        Session storage s = _sessions[id];
        s.lruPrev = uint40(tail);
        s.lruNext = 0;
        if (tail == 0) _lruHead = id;
        else _sessions[tail].lruNext = uint40(id);
        _lruTail = id;
    }

    function _lruRemove(uint256 id) private {
        Session storage s = _sessions[id];
        uint256 prev = s.lruPrev;
        uint256 next = s.lruNext;
        if (prev == 0) _lruHead = next;
        else _sessions[prev].lruNext = uint40(next);
        if (next == 0) _lruTail = prev;
        else _sessions[next].lruPrev = uint40(prev);
        s.lruPrev = 0;
        s.lruNext = 0;
    }

    /// @dev New ids are the highest, so appending keeps each user's list in ascending id order.
    function _userAppend(address user, uint256 id) private {
        UserList storage l = _userActive[user];
        uint256 tail = l.tail;
        _sessions[id].userPrev = uint40(tail);
        if (tail == 0) l.head = uint40(id);
        else _sessions[tail].userNext = uint40(id);
        l.tail = uint40(id);
        unchecked { l.count += 1; }
    }

    function _userRemove(address user, uint256 id) private {
        UserList storage l = _userActive[user];
        Session storage s = _sessions[id];
        uint256 prev = s.userPrev;
        uint256 next = s.userNext;
        if (prev == 0) l.head = uint40(next);
        else _sessions[prev].userNext = uint40(next);
        if (next == 0) l.tail = uint40(prev);
        else _sessions[next].userPrev = uint40(prev);
        unchecked { l.count -= 1; }
        s.userPrev = 0;
        s.userNext = 0;
    }

    function _pos(uint256 id, uint8 which) private view returns (uint256) {
        Session storage s = _sessions[id];
        return which == ACTIVE ? s.activePos : s.poolPos;
    }

    function _setPos(uint256 id, uint8 which, uint256 pos) private {
        Session storage s = _sessions[id];
        if (which == ACTIVE) s.activePos = uint40(pos);
        else s.poolPos = uint40(pos);
    }

    function _pushTo(uint256[] storage arr, uint8 which, uint256 id) private {
        arr.push(id);
        _setPos(id, which, arr.length);
    }

    /// @dev Swap-and-pop removal using the 1-based position stored in the session.
    function _removeFrom(uint256[] storage arr, uint8 which, uint256 id) private {
        uint256 pos = _pos(id, which);
        if (pos == 0) return;
        uint256 last = arr[arr.length - 1];
        arr[pos - 1] = last;
        _setPos(last, which, pos);
        arr.pop();
        _setPos(id, which, 0);
    }

}
