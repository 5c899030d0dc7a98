// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IDtnAi} from "./dtn/IDtnAi.sol";
import {WithDtnAi} from "./dtn/WithDtnAi.sol";
import {DtnDefaults} from "./dtn/DtnDefaults.sol";

/// @dev Optional views of the deployed DTN that are not part of IDtnAi.
interface IDtnRouterViews {
    /// @notice The DTN session manager contract behind the router.
    function sessionManager() external view returns (address);
}

interface IDtnSessionBalances {
    /// @notice The remaining balance of a DTN session.
    function getSessionBalance(uint256 sessionId) external view returns (uint256);
}

/// @title AdvancedSessionManager
/// @notice Funded, reusable and poolable DTN AI sessions for a dApp's users.
/// @dev Keeps the public API of the documented DTN example and fixes its defects: stable session ids
///      across renewals, refunds that reach owners, owner-only validated configuration, fees derived
///      from the fee token's decimals, a pending-request guard, bounded O(1) maintenance, a pool that
///      grants usage rights, and callbacks that record each request's outcome.
contract AdvancedSessionManager is WithDtnAi, Ownable, ReentrancyGuard {
    using SafeERC20 for IERC20;

    // ------------------------------------------------------------------ types

    enum RequestStatus { None, Pending, Succeeded, Failed }

    /// @dev A session in four storage slots (the example used six, plus one per index): every slot
    ///      written on create costs ~20k gas, and ids, timestamps and token amounts fit easily.
    ///      `sessions(id)` still returns the example's six fields as uint256/address/bool.
    struct Session {
        // slot 0
        address owner;
        uint64 lastUsed;
        bool active;
        // slot 1
        uint128 balance; // funds put into the current DTN session (deposit plus carried refund)
        uint64 requestCount;
        uint64 lastRequestAt;
        // slot 2
        uint192 dtnSessionId;
        uint64 pendingRequests;
        // slot 3: 1-based positions in the id arrays (swap-and-pop removal) and LRU neighbours
        uint48 activePos;
        uint48 userActivePos;
        uint48 poolPos;
        uint48 lruPrev;
        uint48 lruNext;
    }

    /// @dev A request in two slots; the DTN session it was made on tells a stale settle apart.
    struct Request {
        address user;
        uint40 createdAt;
        RequestStatus status;
        uint48 sessionId;
        uint256 dtnSessionId;
    }

    struct SessionView {
        uint256 sessionId;
        address owner;
        uint256 balance;
        uint256 lastUsed;
        bool active;
        uint256 requestCount;
        uint256 dtnSessionId;
        uint256 pendingRequests;
        uint256 lastRequestAt;
        bool pooled;
        bool hasDtnBalance;
        uint256 dtnBalance;
    }

    struct Config {
        address ai;
        address feeToken;
        uint8 tokenDecimals;
        uint256 minSessionBalance;
        uint256 maxSessionAge;
        uint256 sessionPoolSize;
        uint256 poolLength;
        uint256 feePerByteReq;
        uint256 feePerByteRes;
        uint256 totalFeePerRes;
        uint256 requestTimeout;
        uint256 activeCount;
    }

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

    // ------------------------------------------------------------------ errors

    error RequestsPending(uint256 sessionId, uint256 pending, uint256 retryAfter);
    error RequestIdCollision(bytes32 requestId);
    error NotAllowedToUseSession(uint256 sessionId, address caller);
    error InvalidConfig(string reason);
    error NothingToWithdraw();
    error ZeroAmount();

    // ------------------------------------------------------------------ example-compatible state

    mapping(address => uint256[]) public userSessions;
    uint256[] public activeSessions;

    uint256 public minSessionBalance;
    uint256 public maxSessionAge = 24 hours;
    uint256 public sessionPoolSize = 5;

    uint256[] public sessionPool;

    // ------------------------------------------------------------------ added state

    IERC20 public immutable feeToken;
    uint8 public immutable tokenDecimals;

    uint256 public feePerByteReq;
    uint256 public feePerByteRes;
    uint256 public totalFeePerRes;
    /// @notice After this long without an answer, a session's pending requests no longer block close/renew.
    uint256 public requestTimeout = 15 minutes;
    /// @notice Sessions closed by `cleanupOldSessions()`; keeps one transaction far below 2^24 gas.
    uint256 public constant DEFAULT_CLEANUP_BATCH = 50;

    uint256 public nextSessionId = 1;
    /// @notice The pooled session a user took with getFromPool(); its requests may use it.
    mapping(address => uint256) public poolGrant;
    /// @notice Refunds credited by cleanup, withdrawable with withdrawRefunds().
    mapping(address => uint256) public claimableRefunds;
    uint256 public totalClaimable;

    mapping(uint256 => Session) private _sessions;
    mapping(bytes32 => Request) private _requests;
    mapping(address => bytes32[]) private _userRequests;
    mapping(address => uint256[]) private _userActive;
    // Active sessions ordered by lastUsed (head = least recently used): cleanup only visits idle ones.
    uint256 private _lruHead;
    uint256 private _lruTail;

    // Which id array a position field belongs to.
    uint8 private constant ACTIVE = 0;
    uint8 private constant USER_ACTIVE = 1;
    uint8 private constant POOL = 2;

    /// @param ai_ The DTN router. Fee defaults are derived from its fee token's decimals.
    constructor(address ai_) Ownable(msg.sender) {
        setAi(ai_);
        feeToken = IERC20(IDtnAi(ai_).feeToken());
        uint8 decimals_ = IERC20Metadata(address(feeToken)).decimals();
        tokenDecimals = decimals_;
        uint256 unit = 10 ** uint256(decimals_);
        feePerByteReq = unit / 1000; // 0.001 token per byte
        feePerByteRes = unit / 1000;
        totalFeePerRes = unit; // 1 token per response at most
        minSessionBalance = 10 * unit; // 10 tokens
    }

    // ------------------------------------------------------------------ sessions

    /// @notice Creates a session funded with `balance` fee-token units taken from the caller.
    /// @dev The caller must have approved this contract for `balance`.
    /// @return sessionId The manager's session id; it stays the same across renewals.
    function createSession(uint256 balance) external nonReentrant returns (uint256 sessionId) {
        return _createSession(msg.sender, balance);
    }

    /// @notice Returns the caller's current session (a pooled one taken by the caller first, else its
    ///         newest active one), creating one funded with `minSessionBalance` when there is none.
    function getOrCreateSession() external nonReentrant returns (uint256 sessionId) {
        sessionId = _sessionFor(msg.sender);
        if (sessionId == 0) return _createSession(msg.sender, minSessionBalance);
        _touch(sessionId);
    }

    /// @notice Adds `additionalBalance` to a session. DTN cannot top up a session, so the DTN session
    ///         is closed and a new one is funded with its refund plus the new amount; the id stays.
    function renewSession(uint256 sessionId, uint256 additionalBalance) external nonReentrant {
        Session storage s = _sessions[sessionId];
        require(s.owner == msg.sender, "Not session owner");
        require(s.active, "Session not active");
        if (additionalBalance == 0) revert ZeroAmount();
        _requireNoPending(sessionId);

        feeToken.safeTransferFrom(msg.sender, address(this), additionalBalance);
        uint256 refund = _closeDtnSession(sessionId);
        uint256 newBalance = refund + additionalBalance;
        // Transfer and start in one transaction: DTN credits unassigned deposits to the next starter.
        feeToken.safeTransfer(ai.feeTarget(), newBalance);
        s.dtnSessionId = SafeCast.toUint192(ai.startUserSession());
        s.pendingRequests = 0;
        s.balance = SafeCast.toUint128(newBalance);
        _touch(sessionId);
        emit SessionRenewed(sessionId, newBalance);
    }

    /// @notice Closes a session of the caller and sends DTN's refund to the caller.
    function closeSession(uint256 sessionId) external nonReentrant {
        _closeOwned(sessionId);
    }

    /// @notice Closes every active session of the caller.
    function closeAllSessions() external nonReentrant {
        uint256[] storage mine = _userActive[msg.sender];
        while (mine.length > 0) {
            _closeOwned(mine[mine.length - 1]);
        }
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
        return _request(_currentOrNewSession(), prompt, model, r);
    }

    /// @notice Makes an AI request with full routing (e.g. to named nodes) from the caller's current session.
    function makeAIRequestWithRouting(string memory prompt, string memory model, IDtnAi.DtnRouting memory routing)
        external
        payable
        nonReentrant
        returns (bytes32)
    {
        return _request(_currentOrNewSession(), prompt, model, routing);
    }

    /// @notice Makes an AI request from a given session the caller owns or took from the pool.
    /// @dev Lets a client fan requests out over several sessions (one request per session, user and second).
    function makeAIRequestInSession(
        uint256 sessionId,
        string memory prompt,
        string memory model,
        IDtnAi.DtnRouting memory routing
    ) external payable nonReentrant returns (bytes32) {
        return _request(sessionId, prompt, model, routing);
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
        require(info.status == RequestStatus.Pending, "Request not pending");
        (IDtnAi.ResponseStatus status,,) = ai.fetchResponse(requestId);
        _record(requestId, info, status);
    }

    // ------------------------------------------------------------------ pool

    /// @notice Offers one of the caller's active sessions in the shared pool.
    function addToPool(uint256 sessionId) external {
        Session storage s = _sessions[sessionId];
        require(s.owner == msg.sender, "Not session owner");
        require(s.active, "Session not active");
        require(s.poolPos == 0, "Already pooled");
        require(sessionPool.length < sessionPoolSize, "Pool full");
        _pushTo(sessionPool, POOL, sessionId);
        emit SessionPooled(sessionId, msg.sender);
    }

    /// @notice Takes the newest pooled session: the caller's requests use it from now on. Funds and
    ///         refunds stay with the session owner. Emits SessionTakenFromPool with the id.
    function getFromPool() external nonReentrant returns (uint256 sessionId) {
        require(sessionPool.length > 0, "Pool empty");
        sessionId = sessionPool[sessionPool.length - 1];
        _poolRemove(sessionId);
        poolGrant[msg.sender] = sessionId;
        _touch(sessionId);
        emit SessionTakenFromPool(sessionId, msg.sender);
    }

    // ------------------------------------------------------------------ maintenance

    /// @notice Closes up to DEFAULT_CLEANUP_BATCH sessions idle for longer than maxSessionAge.
    /// @return closed How many sessions were closed.
    function cleanupOldSessions() external nonReentrant returns (uint256 closed) {
        return _cleanup(DEFAULT_CLEANUP_BATCH);
    }

    /// @notice Closes up to `maxSessions` idle sessions; refunds are credited to their owners.
    function cleanupOldSessionsUpTo(uint256 maxSessions) external nonReentrant returns (uint256 closed) {
        if (maxSessions == 0) revert ZeroAmount();
        return _cleanup(maxSessions);
    }

    /// @notice Pays out the caller's refunds credited by cleanup.
    function withdrawRefunds() external nonReentrant {
        uint256 amount = claimableRefunds[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        claimableRefunds[msg.sender] = 0;
        totalClaimable -= amount;
        feeToken.safeTransfer(msg.sender, amount);
        emit RefundWithdrawn(msg.sender, amount);
    }

    // ------------------------------------------------------------------ configuration (owner)

    /// @notice Sets the minimum session balance (token units), idle age (seconds) and pool size.
    function updateConfig(uint256 _minSessionBalance, uint256 _maxSessionAge, uint256 _sessionPoolSize)
        external
        onlyOwner
    {
        if (_minSessionBalance == 0) revert InvalidConfig("minimum session balance is zero");
        if (_maxSessionAge == 0) revert InvalidConfig("max session age is zero");
        if (_maxSessionAge < requestTimeout) revert InvalidConfig("max session age below request timeout");
        if (_sessionPoolSize < sessionPool.length) revert InvalidConfig("pool size below current pool");
        minSessionBalance = _minSessionBalance;
        maxSessionAge = _maxSessionAge;
        sessionPoolSize = _sessionPoolSize;
        emit ConfigUpdated(_minSessionBalance, _maxSessionAge, _sessionPoolSize);
    }

    /// @notice Sets the fees offered to DTN nodes per request (token units).
    function setFees(uint256 feePerByteReq_, uint256 feePerByteRes_, uint256 totalFeePerRes_) external onlyOwner {
        if (totalFeePerRes_ == 0) revert InvalidConfig("max fee per response is zero");
        feePerByteReq = feePerByteReq_;
        feePerByteRes = feePerByteRes_;
        totalFeePerRes = totalFeePerRes_;
        emit FeesUpdated(feePerByteReq_, feePerByteRes_, totalFeePerRes_);
    }

    /// @notice Sets how long pending requests block close and renew.
    function setRequestTimeout(uint256 requestTimeout_) external onlyOwner {
        if (requestTimeout_ == 0) revert InvalidConfig("request timeout is zero");
        if (requestTimeout_ > maxSessionAge) revert InvalidConfig("request timeout above max session age");
        requestTimeout = requestTimeout_;
        emit RequestTimeoutUpdated(requestTimeout_);
    }

    // ------------------------------------------------------------------ views (example)

    /// @notice A session's owner, funded balance, last use, state and request count (as in the example).
    function getSessionStats(uint256 sessionId)
        external
        view
        returns (address owner, uint256 balance, uint256 lastUsed, bool active, uint256 requestCount)
    {
        Session storage s = _sessions[sessionId];
        return (s.owner, s.balance, s.lastUsed, s.active, s.requestCount);
    }

    /// @notice A session's record with the documented example's fields (sessionId 0 when unknown).
    function sessions(uint256 id)
        external
        view
        returns (uint256 sessionId, address owner, uint256 balance, uint256 lastUsed, bool active, uint256 requestCount)
    {
        Session storage s = _sessions[id];
        return (s.owner == address(0) ? 0 : id, s.owner, s.balance, s.lastUsed, s.active, s.requestCount);
    }

    /// @notice Whether a session is in the pool now.
    function isPooled(uint256 sessionId) public view returns (bool) {
        return _sessions[sessionId].poolPos != 0;
    }

    /// @notice A request made through this manager: its session, user, time and outcome.
    function requests(bytes32 requestId)
        external
        view
        returns (uint256 sessionId, address user, uint256 createdAt, RequestStatus status)
    {
        Request storage r = _requests[requestId];
        return (r.sessionId, r.user, r.createdAt, r.status);
    }

    /// @notice How many sessions `user` has ever created.
    function getUserSessionCount(address user) external view returns (uint256) {
        return userSessions[user].length;
    }

    /// @notice Sessions in the pool now, and the pool's capacity.
    function getPoolStatus() external view returns (uint256 poolSize, uint256 maxSize) {
        return (sessionPool.length, sessionPoolSize);
    }

    // ------------------------------------------------------------------ views (client)

    /// @notice A session's full record, with its DTN-side spendable balance when the router exposes it.
    function getSession(uint256 sessionId) public view returns (SessionView memory v) {
        Session storage s = _sessions[sessionId];
        v.sessionId = s.owner == address(0) ? 0 : sessionId;
        v.owner = s.owner;
        v.balance = s.balance;
        v.lastUsed = s.lastUsed;
        v.active = s.active;
        v.requestCount = s.requestCount;
        v.dtnSessionId = s.dtnSessionId;
        v.pendingRequests = s.pendingRequests;
        v.lastRequestAt = s.lastRequestAt;
        v.pooled = s.poolPos != 0;
        if (s.active) (v.hasDtnBalance, v.dtnBalance) = _dtnBalance(s.dtnSessionId);
    }

    /// @notice Several sessions' records in one call.
    function getSessions(uint256[] calldata ids) external view returns (SessionView[] memory out) {
        out = new SessionView[](ids.length);
        for (uint256 i = 0; i < ids.length; i++) out[i] = getSession(ids[i]);
    }

    /// @notice Every session id `user` has created, oldest first.
    function getUserSessions(address user) external view returns (uint256[] memory) {
        return userSessions[user];
    }

    /// @notice The active sessions `user` owns.
    function getUserActiveSessions(address user) external view returns (uint256[] memory) {
        return _userActive[user];
    }

    /// @notice A page of active session ids, and how many there are in all.
    function getActiveSessions(uint256 offset, uint256 limit)
        external
        view
        returns (uint256[] memory ids, uint256 total)
    {
        total = activeSessions.length;
        ids = _slice(activeSessions, offset, limit);
    }

    /// @notice The pooled session ids; getFromPool() takes the last one.
    function getPoolSessions() external view returns (uint256[] memory) {
        return sessionPool;
    }

    /// @notice Up to `max` sessions that cleanup would close now, least recently used first.
    function getIdleSessions(uint256 max) external view returns (uint256[] memory ids) {
        ids = new uint256[](max);
        uint256 n;
        for (uint256 id = _lruHead; id != 0 && n < max; id = _sessions[id].lruNext) {
            if (!_isIdle(id)) break;
            ids[n++] = id;
        }
        assembly {
            mstore(ids, n)
        }
    }

    /// @notice A user's request ids, oldest first, with the total count.
    function getUserRequests(address user, uint256 offset, uint256 limit)
        external
        view
        returns (bytes32[] memory ids, uint256 total)
    {
        bytes32[] storage all = _userRequests[user];
        total = all.length;
        uint256 end = offset >= total ? offset : (limit > total - offset ? total : offset + limit);
        ids = new bytes32[](end - offset);
        for (uint256 i = offset; i < end; i++) ids[i - offset] = all[i];
    }

    /// @notice Everything a client needs to know about this manager's configuration, in one call.
    function getConfig() external view returns (Config memory c) {
        c.ai = address(ai);
        c.feeToken = address(feeToken);
        c.tokenDecimals = tokenDecimals;
        c.minSessionBalance = minSessionBalance;
        c.maxSessionAge = maxSessionAge;
        c.sessionPoolSize = sessionPoolSize;
        c.poolLength = sessionPool.length;
        c.feePerByteReq = feePerByteReq;
        c.feePerByteRes = feePerByteRes;
        c.totalFeePerRes = totalFeePerRes;
        c.requestTimeout = requestTimeout;
        c.activeCount = activeSessions.length;
    }

    // ------------------------------------------------------------------ internals: sessions

    function _createSession(address owner_, uint256 amount) private returns (uint256 sessionId) {
        require(amount >= minSessionBalance, "Balance too low");
        // Transfer and start in one transaction: DTN credits unassigned deposits to the next starter.
        feeToken.safeTransferFrom(owner_, ai.feeTarget(), amount);
        uint256 dtnSessionId = ai.startUserSession();

        sessionId = nextSessionId++;
        require(sessionId <= type(uint48).max, "Too many sessions"); // ids are stored as uint48
        Session storage s = _sessions[sessionId];
        s.owner = owner_;
        s.lastUsed = uint64(block.timestamp);
        s.active = true;
        s.balance = SafeCast.toUint128(amount);
        s.dtnSessionId = SafeCast.toUint192(dtnSessionId);
        userSessions[owner_].push(sessionId);
        _pushTo(activeSessions, ACTIVE, sessionId);
        _pushTo(_userActive[owner_], USER_ACTIVE, sessionId);
        _lruAppend(sessionId);
        emit SessionCreated(sessionId, owner_, amount);
    }

    function _sessionFor(address user) private view returns (uint256) {
        uint256 granted = poolGrant[user];
        if (granted != 0 && _sessions[granted].active) return granted;
        uint256[] storage mine = _userActive[user];
        return mine.length == 0 ? 0 : mine[mine.length - 1];
    }

    function _currentOrNewSession() private returns (uint256 sessionId) {
        sessionId = _sessionFor(msg.sender);
        if (sessionId == 0) sessionId = _createSession(msg.sender, minSessionBalance);
    }

    function _closeOwned(uint256 sessionId) private {
        Session storage s = _sessions[sessionId];
        require(s.owner == msg.sender, "Not session owner");
        require(s.active, "Session not active");
        _requireNoPending(sessionId);
        uint256 refund = _closeDtnSession(sessionId);
        _deactivate(sessionId);
        // Push the refund; if the owner cannot receive (e.g. a blocked address), credit it instead.
        if (refund > 0 && !feeToken.trySafeTransfer(msg.sender, refund)) _credit(sessionId, msg.sender, refund);
        emit SessionClosed(sessionId, msg.sender, refund);
    }

    /// @dev Closes the DTN session and returns exactly what DTN refunded (measured, not assumed).
    function _closeDtnSession(uint256 sessionId) private returns (uint256 refund) {
        uint256 before = feeToken.balanceOf(address(this));
        ai.closeUserSession(_sessions[sessionId].dtnSessionId);
        refund = feeToken.balanceOf(address(this)) - before;
    }

    function _deactivate(uint256 sessionId) private {
        Session storage s = _sessions[sessionId];
        s.active = false;
        s.balance = 0;
        s.pendingRequests = 0;
        _removeFrom(activeSessions, ACTIVE, sessionId);
        _removeFrom(_userActive[s.owner], USER_ACTIVE, sessionId);
        _lruRemove(sessionId);
        if (s.poolPos != 0) _poolRemove(sessionId);
    }

    function _credit(uint256 sessionId, address owner_, uint256 amount) private {
        claimableRefunds[owner_] += amount;
        totalClaimable += amount;
        emit RefundCredited(sessionId, owner_, amount);
    }

    function _requireNoPending(uint256 sessionId) private view {
        Session storage s = _sessions[sessionId];
        if (s.pendingRequests > 0 && block.timestamp < s.lastRequestAt + requestTimeout) {
            revert RequestsPending(sessionId, s.pendingRequests, s.lastRequestAt + requestTimeout);
        }
    }

    function _isIdle(uint256 sessionId) private view returns (bool) {
        return block.timestamp - _sessions[sessionId].lastUsed > maxSessionAge;
    }

    function _cleanup(uint256 maxSessions) private returns (uint256 closed) {
        uint256 visited;
        uint256 firstFailed; // failed sessions move to the tail: stop when one comes round again
        uint256 id = _lruHead;
        while (id != 0 && id != firstFailed && visited < maxSessions && _isIdle(id)) {
            visited++;
            Session storage s = _sessions[id];
            uint256 next = s.lruNext;
            uint256 before = feeToken.balanceOf(address(this));
            // One session DTN refuses to close must not block everyone else's cleanup.
            try ai.closeUserSession(s.dtnSessionId) {
                uint256 refund = feeToken.balanceOf(address(this)) - before;
                address owner_ = s.owner;
                _deactivate(id);
                if (refund > 0) _credit(id, owner_, refund);
                emit SessionClosed(id, owner_, refund);
                closed++;
            } catch (bytes memory reason) {
                if (firstFailed == 0) firstFailed = id;
                _lruRemove(id);
                _lruAppend(id); // retried after the others, not first every time
                emit CleanupFailed(id, reason);
            }
            id = next;
        }
    }

    // ------------------------------------------------------------------ internals: requests

    function _request(uint256 sessionId, string memory prompt, string memory model, IDtnAi.DtnRouting memory routing)
        private
        returns (bytes32 requestId)
    {
        Session storage s = _sessions[sessionId];
        require(s.active, "Session not active");
        if (s.owner != msg.sender && poolGrant[msg.sender] != sessionId) {
            revert NotAllowedToUseSession(sessionId, msg.sender);
        }
        uint256 dtnSessionId = s.dtnSessionId;
        requestId = ai.request{value: msg.value}(
            dtnSessionId,
            keccak256(abi.encodePacked(model)),
            routing,
            IDtnAi.DtnRequest({
                call: abi.encode(DtnDefaults.singleArray(prompt)),
                extraParams: "",
                calltype: IDtnAi.CallType.DIRECT,
                feePerByteReq: feePerByteReq,
                feePerByteRes: feePerByteRes,
                totalFeePerRes: totalFeePerRes
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
        s.pendingRequests += 1;
        s.lastRequestAt = uint64(block.timestamp);
        s.requestCount += 1;
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
        if (info.dtnSessionId == st.dtnSessionId && st.pendingRequests > 0) st.pendingRequests -= 1;
        emit AIRequestCompleted(requestId, info.sessionId, info.user, status);
    }

    function _dtnBalance(uint256 dtnSessionId) private view returns (bool ok, uint256 balance) {
        address manager;
        try IDtnRouterViews(address(ai)).sessionManager() returns (address m) {
            manager = m;
        } catch {
            return (false, 0);
        }
        if (manager.code.length == 0) return (false, 0);
        try IDtnSessionBalances(manager).getSessionBalance(dtnSessionId) returns (uint256 b) {
            return (true, b);
        } catch {
            return (false, 0);
        }
    }

    // ------------------------------------------------------------------ internals: sets and lists

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
        s.lruPrev = uint48(tail);
        s.lruNext = 0;
        if (tail == 0) _lruHead = id;
        else _sessions[tail].lruNext = uint48(id);
        _lruTail = id;
    }

    function _lruRemove(uint256 id) private {
        Session storage s = _sessions[id];
        uint256 prev = s.lruPrev;
        uint256 next = s.lruNext;
        if (prev == 0) _lruHead = next;
        else _sessions[prev].lruNext = uint48(next);
        if (next == 0) _lruTail = prev;
        else _sessions[next].lruPrev = uint48(prev);
        s.lruPrev = 0;
        s.lruNext = 0;
    }

    function _poolRemove(uint256 sessionId) private {
        _removeFrom(sessionPool, POOL, sessionId);
    }

    function _pos(uint256 id, uint8 which) private view returns (uint256) {
        Session storage s = _sessions[id];
        return which == ACTIVE ? s.activePos : which == USER_ACTIVE ? s.userActivePos : s.poolPos;
    }

    function _setPos(uint256 id, uint8 which, uint256 pos) private {
        Session storage s = _sessions[id];
        if (which == ACTIVE) s.activePos = uint48(pos);
        else if (which == USER_ACTIVE) s.userActivePos = uint48(pos);
        else s.poolPos = uint48(pos);
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

    function _slice(uint256[] storage arr, uint256 offset, uint256 limit) private view returns (uint256[] memory out) {
        uint256 total = arr.length;
        uint256 end = offset >= total ? offset : (limit > total - offset ? total : offset + limit);
        out = new uint256[](end - offset);
        for (uint256 i = offset; i < end; i++) out[i - offset] = arr[i];
    }
}
