// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {AdvancedSessionStore} from "./AdvancedSessionStore.sol";

/// @title AdvancedSessionManagerLens
/// @notice The read-only views of AdvancedSessionManager. The manager creates this lens and serves
///         its functions at the manager's own address (fallback, delegatecall in a static context),
///         so clients keep one address and one ABI; the manager's code keeps room to grow.
/// @dev Called directly, it reads its own (empty) storage: use it through the manager.
contract AdvancedSessionManagerLens is AdvancedSessionStore {
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
        uint256 closableAt; // the effective deadline of the pending requests (0 when none pending)
        bool closing;
        uint256 pendingSince; // when the oldest unanswered request of the streak was made (0: none)
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
        uint256 grantDuration;
    }

    address private immutable _feeToken;
    uint8 private immutable _tokenDecimals;

    /// @dev The manager's immutables are in the manager's code, not in storage: the lens gets copies.
    constructor(address feeToken_, uint8 tokenDecimals_) {
        _feeToken = feeToken_;
        _tokenDecimals = tokenDecimals_;
    }

    // ------------------------------------------------------------------ constants of the manager

    function DEFAULT_CLEANUP_BATCH() external pure returns (uint256) {
        return _DEFAULT_CLEANUP_BATCH;
    }

    function UPKEEP_GAS_BUDGET() external pure returns (uint256) {
        return _UPKEEP_GAS_BUDGET;
    }

    function MAINTENANCE_GAS_BUDGET() external pure returns (uint256) {
        return _MAINTENANCE_GAS_BUDGET;
    }

    function MAX_SESSION_AGE() external pure returns (uint256) {
        return _MAX_SESSION_AGE;
    }

    function MAX_REQUEST_TIMEOUT() external pure returns (uint256) {
        return _MAX_REQUEST_TIMEOUT;
    }

    function MAX_POOL_SIZE() external pure returns (uint256) {
        return _MAX_POOL_SIZE;
    }

    function MIN_GRANT_DURATION() external pure returns (uint256) {
        return _MIN_GRANT_DURATION;
    }

    function MAX_GRANT_DURATION() external pure returns (uint256) {
        return _MAX_GRANT_DURATION;
    }

    function GRANT_RELEASED() external pure returns (uint8) {
        return _GRANT_RELEASED;
    }

    function GRANT_REVOKED() external pure returns (uint8) {
        return _GRANT_REVOKED;
    }

    function GRANT_EXHAUSTED() external pure returns (uint8) {
        return _GRANT_EXHAUSTED;
    }

    function GRANT_REMOVED() external pure returns (uint8) {
        return _GRANT_REMOVED;
    }

    function GRANT_EXPIRED() external pure returns (uint8) {
        return _GRANT_EXPIRED;
    }

    // ------------------------------------------------------------------ state of the example

    /// @notice The example's public state, read here so the manager's code keeps room to grow.
    function userSessions(address user, uint256 i) external view returns (uint256) {
        return _userSessions[user][i];
    }

    function activeSessions(uint256 i) external view returns (uint256) {
        return _activeSessions[i];
    }

    function sessionPool(uint256 i) external view returns (uint256) {
        return _sessionPool[i];
    }

    function minSessionBalance() external view returns (uint256) {
        return _minBalance;
    }

    function maxSessionAge() external view returns (uint256) {
        return _maxAge;
    }

    function sessionPoolSize() external view returns (uint256) {
        return _poolSize;
    }

    function feePerByteReq() external view returns (uint256) {
        return _feePerByteReq;
    }

    function feePerByteRes() external view returns (uint256) {
        return _feePerByteRes;
    }

    function totalFeePerRes() external view returns (uint256) {
        return _totalFeePerRes;
    }

    /// @notice A session's pending requests block close and renew until this long after the oldest
    ///         unanswered one (its deadline is fixed when made: raising this never extends it).
    function requestTimeout() external view returns (uint256) {
        return _requestTimeout;
    }

    /// @notice How long a pool grant lasts from its take (set by setGrantDuration).
    function grantDuration() external view returns (uint256) {
        return _grantDuration;
    }

    function nextSessionId() external view returns (uint256) {
        return _nextSessionId;
    }

    /// @notice Refunds credited by cleanup, withdrawable with withdrawRefunds().
    function claimableRefunds(address owner_) external view returns (uint256) {
        return _claimableRefunds[owner_];
    }

    function totalClaimable() external view returns (uint256) {
        return _totalClaimable;
    }

    // ------------------------------------------------------------------ views of the example

    /// @notice A session's owner, remaining balance (DTN balance when the router exposes it, else
    ///         funded), last use, state and request count (as in the example).
    function getSessionStats(uint256 sessionId)
        external
        view
        returns (address owner, uint256 balance, uint256 lastUsed, bool active, uint256 requestCount)
    {
        Session storage s = _sessions[sessionId];
        return (s.owner, _remaining(s), s.lastUsed, s.active, s.requestCount);
    }

    /// @notice A session's record with the documented example's fields (sessionId 0 when unknown);
    ///         `balance` is what remains (see getSessionStats).
    function sessions(uint256 id)
        external
        view
        returns (uint256 sessionId, address owner, uint256 balance, uint256 lastUsed, bool active, uint256 requestCount)
    {
        Session storage s = _sessions[id];
        return (s.owner == address(0) ? 0 : id, s.owner, _remaining(s), s.lastUsed, s.active, s.requestCount);
    }

    /// @notice Whether a session is in the pool now.
    function isPooled(uint256 sessionId) public view returns (bool) {
        return _sessions[sessionId].poolPos != 0;
    }

    /// @notice How many sessions `user` has ever created.
    function getUserSessionCount(address user) external view returns (uint256) {
        return _userSessions[user].length;
    }

    /// @notice Sessions in the pool now, and the pool's capacity.
    function getPoolStatus() external view returns (uint256 poolSize, uint256 maxSize) {
        return (_sessionPool.length, _poolSize);
    }
    // ------------------------------------------------------------------ views for clients

    /// @notice A request made through this manager: its session, user, time and outcome.
    function requests(bytes32 requestId)
        external
        view
        returns (uint256 sessionId, address user, uint256 createdAt, RequestStatus status)
    {
        Request storage r = _requests[requestId];
        return (r.sessionId, r.user, r.createdAt, r.status);
    }

    /// @notice A session's full record, with its DTN-side spendable balance when the router exposes it.
    ///         `balance` is what was funded; `closableAt` is when its pending requests stop blocking
    ///         close and renew (0 when none is pending).
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
        if (s.pendingRequests > 0) v.closableAt = _deadline(s);
        v.closing = s.closing;
        if (s.pendingRequests > 0) v.pendingSince = s.pendingSince;
    }

    /// @notice Several sessions' records in one call.
    function getSessions(uint256[] calldata ids) external view returns (SessionView[] memory out) {
        out = new SessionView[](ids.length);
        for (uint256 i = 0; i < ids.length; i++) out[i] = getSession(ids[i]);
    }

    /// @notice Every session id `user` has created, oldest first.
    function getUserSessions(address user) external view returns (uint256[] memory) {
        return _userSessions[user];
    }

    /// @notice The active sessions `user` owns, in ascending id order.
    function getUserActiveSessions(address user) external view returns (uint256[] memory ids) {
        UserList storage l = _userActive[user];
        ids = new uint256[](l.count);
        uint256 n;
        for (uint256 id = l.head; id != 0; id = _sessions[id].userNext) {
            ids[n] = id;
            unchecked { n++; }
        }
    }

    /// @notice A page of active session ids, and how many there are in all.
    function getActiveSessions(uint256 offset, uint256 limit)
        external
        view
        returns (uint256[] memory ids, uint256 total)
    {
        total = _activeSessions.length;
        uint256 end = _pageEnd(total, offset, limit);
        ids = new uint256[](end - offset);
        for (uint256 i = offset; i < end; i++) ids[i - offset] = _activeSessions[i];
    }

    /// @notice The pooled session ids; getFromPool() takes the last one.
    function getPoolSessions() external view returns (uint256[] memory) {
        return _sessionPool;
    }

    /// @notice The pooled session `user` holds a live (not expired) grant on (0 = none); its requests
    ///         may use it.
    function poolGrant(address user) external view returns (uint256) {
        Grant storage g = _grants[user];
        return block.timestamp < _grantExpiry(g) ? g.sessionId : 0;
    }

    /// @notice The grant `user` holds: the session, what it may still spend, whether it may name
    ///         trusted node ids, and when it expires (all zero when none). An expired grant is listed
    ///         until getFromPool ends it; its holder can no longer make requests with it.
    function getGrant(address user)
        external
        view
        returns (uint256 sessionId, uint256 remaining, bool allowNodeRouting, uint256 expiresAt)
    {
        Grant storage g = _grants[user];
        uint256 sid = g.sessionId;
        if (sid == 0) return (0, 0, false, 0);
        Session storage s = _sessions[sid];
        return (sid, s.offerBudget, s.allowNodeRouting, _grantExpiry(g));
    }

    /// @notice Up to `max` sessions, oldest grant first, whose grants have expired: getFromPool hands
    ///         them out when the pool is empty.
    function getExpiredGrants(uint256 max) external view returns (uint256[] memory ids) {
        uint256 n;
        for (uint256 id = _grantHead; id != 0 && n < max && _expiredAt(id); id = _grantOf(id).next) n++;
        ids = new uint256[](n);
        uint256 id_ = _grantHead;
        for (uint256 i = 0; i < n; i++) {
            ids[i] = id_;
            id_ = _grantOf(id_).next;
        }
    }

    /// @notice How a session is shared: offered (in the pool now, or granted), the current taker, what
    ///         the offer may still spend (its budget, across all grants), whether takers may name
    ///         trusted node ids, and when the taker's grant expires (0 without a taker).
    function getPoolOffer(uint256 sessionId)
        external
        view
        returns (bool offered, address taker, uint256 grantLimit, bool allowNodeRouting, uint256 grantExpiresAt)
    {
        Session storage s = _sessions[sessionId];
        uint256 expiresAt = s.taker == address(0) ? 0 : _grantExpiry(_grants[s.taker]);
        return (s.poolPos != 0 || s.taker != address(0), s.taker, s.offerBudget, s.allowNodeRouting, expiresAt);
    }

    function _grantOf(uint256 sessionId) private view returns (Grant storage) {
        return _grants[_sessions[sessionId].taker];
    }

    function _expiredAt(uint256 sessionId) private view returns (bool) {
        return block.timestamp >= _grantExpiry(_grantOf(sessionId));
    }

    /// @notice Up to `max` sessions that cleanup would close now, least recently used first.
    function getIdleSessions(uint256 max) external view returns (uint256[] memory ids) {
        uint256 n;
        for (uint256 id = _lruHead; id != 0 && n < max && _isIdle(id); id = _sessions[id].lruNext) n++;
        ids = new uint256[](n);
        uint256 id_ = _lruHead;
        for (uint256 i = 0; i < n; i++) {
            ids[i] = id_;
            id_ = _sessions[id_].lruNext;
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
        uint256 end = _pageEnd(total, offset, limit);
        ids = new bytes32[](end - offset);
        for (uint256 i = offset; i < end; i++) ids[i - offset] = all[i];
    }

    /// @notice Everything a client needs to know about this manager's configuration, in one call.
    function getConfig() external view returns (Config memory c) {
        c.ai = address(ai);
        c.feeToken = _feeToken;
        c.tokenDecimals = _tokenDecimals;
        c.minSessionBalance = _minBalance;
        c.maxSessionAge = _maxAge;
        c.sessionPoolSize = _poolSize;
        c.poolLength = _sessionPool.length;
        c.feePerByteReq = _feePerByteReq;
        c.feePerByteRes = _feePerByteRes;
        c.totalFeePerRes = _totalFeePerRes;
        c.requestTimeout = _requestTimeout;
        c.activeCount = _activeSessions.length;
        c.grantDuration = _grantDuration;
    }

    /// @dev What a session has left: its DTN balance when the router exposes it, else what was funded.
    function _remaining(Session storage s) private view returns (uint256) {
        if (!s.active) return s.balance;
        (bool ok, uint256 b) = _dtnBalance(s.dtnSessionId);
        return ok ? b : s.balance;
    }

    /// @dev The end of the page [offset, offset + limit) of a list of `total` (empty past the end).
    function _pageEnd(uint256 total, uint256 offset, uint256 limit) private pure returns (uint256) {
        if (offset >= total) return offset;
        return limit > total - offset ? total : offset + limit;
    }
}
