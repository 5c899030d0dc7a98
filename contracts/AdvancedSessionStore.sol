// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IDtnAi} from "./dtn/IDtnAi.sol";
import {WithDtnAi} from "./dtn/WithDtnAi.sol";

/// @dev Optional views of the deployed DTN that are not part of IDtnAi.
interface IDtnRouterViews {
    /// @notice The DTN session manager contract behind the router.
    function sessionManager() external view returns (address);
}

interface IDtnSessionBalances {
    /// @notice The remaining balance of a DTN session.
    function getSessionBalance(uint256 sessionId) external view returns (uint256);
}

/// @title AdvancedSessionStore
/// @notice The storage of AdvancedSessionManager and the reads it shares with its lens. Both inherit
///         it, so the lens, run by the manager's fallback with delegatecall, sees the same layout.
abstract contract AdvancedSessionStore is WithDtnAi {
    // ------------------------------------------------------------------ types

    enum RequestStatus { None, Pending, Succeeded, Failed }

    /// @dev A session in six storage slots; the first four are written on create, the grant slots
    ///      only when pooled. `sessions(id)` still returns the example's six fields.
    struct Session {
        // slot 0
        address owner;
        uint64 lastUsed;
        bool active;
        bool closing; // beginClose(): only the owner may make requests
        bool allowNodeRouting; // pool takers may name trusted node ids
        // slot 1
        uint128 balance; // funds put into the current DTN session (deposit plus carried refund)
        uint64 requestCount;
        uint64 lastRequestAt;
        // slot 2: written together on every request and answer
        uint128 dtnSessionId;
        uint32 pendingRequests;
        uint48 closableAt; // the pending deadline; kept by a streak restarted soon after (see _request)
        uint48 pendingSince; // start of the streak that fixed closableAt
        // slot 3: 1-based positions in the id arrays (swap-and-pop), LRU and per-user list neighbours
        uint40 activePos;
        uint40 poolPos;
        uint40 lruPrev;
        uint40 lruNext;
        uint40 userPrev;
        uint40 userNext;
        // slot 4: who holds the pool grant, and what the offer may still spend: every taker request
        // spends totalFeePerRes of it, across all grants and re-takes
        address taker;
        uint96 offerBudget;
    }

    /// @dev A request in two slots; the DTN session it was made on tells a stale settle apart.
    struct Request {
        address user;
        uint40 createdAt;
        RequestStatus status;
        uint48 sessionId;
        uint256 dtnSessionId;
    }

    /// @dev A taker's grant: the session it is on (what it may spend is the session's offerBudget),
    ///      when it was taken, and its neighbours (session ids) in the list of grants in take order.
    struct Grant {
        uint40 sessionId;
        uint40 takenAt;
        uint40 prev;
        uint40 next;
    }

    /// @dev The active sessions of one owner, a list in ascending id order.
    struct UserList {
        uint40 head;
        uint40 tail;
        uint40 count;
    }


    // ------------------------------------------------------------------ constants (public in the lens)

    /// @dev Most sessions closed by `cleanupOldSessions()` and `performUpkeep`.
    uint256 internal constant _DEFAULT_CLEANUP_BATCH = 50;
    /// @dev Gas cleanupOldSessions() and performUpkeep spend on closing at most: with the last
    ///      session and the call itself, the worst case needs under 4,500,000, 10% under a keeper's
    ///      usual 5,000,000 perform gas limit.
    uint256 internal constant _UPKEEP_GAS_BUDGET = 4_000_000;
    /// @dev Gas cleanupOldSessionsUpTo and closeAllSessions spend on closing at most: one
    ///      transaction stays well under 2^24 gas.
    uint256 internal constant _MAINTENANCE_GAS_BUDGET = 12_000_000;

    /// @dev Upper bounds of the configuration (owner-only setters refuse more with InvalidConfig).
    uint256 internal constant _MAX_SESSION_AGE = 365 days;
    uint256 internal constant _MAX_REQUEST_TIMEOUT = 7 days;
    uint256 internal constant _MAX_POOL_SIZE = 100;
    /// @dev Bounds of grantDuration: long enough to use a grant, short enough that a drained pool
    ///      refills within a month.
    uint256 internal constant _MIN_GRANT_DURATION = 10 minutes;
    uint256 internal constant _MAX_GRANT_DURATION = 30 days;

    uint8 internal constant _GRANT_RELEASED = 0;
    uint8 internal constant _GRANT_REVOKED = 1;
    uint8 internal constant _GRANT_EXHAUSTED = 2;
    uint8 internal constant _GRANT_REMOVED = 3;
    uint8 internal constant _GRANT_EXPIRED = 4;

    // ------------------------------------------------------------------ example-compatible state

    mapping(address => uint256[]) internal _userSessions;
    uint256[] internal _activeSessions;

    uint256 internal _minBalance;
    uint256 internal _maxAge = 24 hours;
    uint256 internal _poolSize = 5;

    uint256[] internal _sessionPool;

    // ------------------------------------------------------------------ added state

    uint256 internal _feePerByteReq;
    uint256 internal _feePerByteRes;
    uint256 internal _totalFeePerRes;
    /// @dev A session's pending requests block close and renew until this long after the oldest
    ///      unanswered one (its deadline is fixed when made: raising this never extends it).
    uint32 internal _requestTimeout = 15 minutes;
    // A raise must not give back what a lowering took: streaks that began before the last raise
    // (_timeoutRaisedAt) keep at most _timeoutFloor, the lowest timeout in force before any raise.
    // One record for all raises, so a streak between two raises may get a shorter deadline, never
    // a longer one. Same slot as _requestTimeout: a request reads both with one SLOAD.
    uint48 internal _timeoutRaisedAt;
    uint32 internal _timeoutFloor;

    uint256 internal _nextSessionId = 1;
    /// @dev Refunds credited by cleanup, withdrawable with withdrawRefunds().
    mapping(address => uint256) internal _claimableRefunds;
    uint256 internal _totalClaimable;

    mapping(uint256 => Session) internal _sessions;
    mapping(bytes32 => Request) internal _requests;
    mapping(address => bytes32[]) internal _userRequests;
    mapping(address => UserList) internal _userActive;
    mapping(address => Grant) internal _grants;
    // Active sessions ordered by lastUsed (head = least recently used): cleanup only visits idle ones.
    uint256 internal _lruHead;
    uint256 internal _lruTail;
    // Live grants in the order they were taken, which is the order they expire in: every grant lasts
    // _grantDuration (one duration for all; changing it moves every expiry alike). One slot, never
    // zero, so taking the first grant does not pay for a new slot.
    uint40 internal _grantHead;
    uint40 internal _grantTail;
    uint32 internal _grantDuration = 1 days;

    // ------------------------------------------------------------------ shared reads

    function _isIdle(uint256 sessionId) internal view returns (bool) {
        return block.timestamp - _sessions[sessionId].lastUsed > _maxAge;
    }

    function _dtnBalance(uint256 dtnSessionId) internal view returns (bool ok, uint256 balance) {
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

    /// @dev The effective deadline of a session's pending requests: the one fixed when the streak
    ///      began, or earlier if requestTimeout was lowered since, even if it was raised again.
    ///      Saturating.
    function _deadline(Session storage s) internal view returns (uint256) {
        uint256 fixedAt = s.closableAt;
        uint256 since = s.pendingSince;
        uint256 timeout = _requestTimeout;
        // A streak that begins in the second of a raise counts as after it (it gets the raise).
        if (since < _timeoutRaisedAt && _timeoutFloor < timeout) timeout = _timeoutFloor;
        uint256 now_ = _addSat(since, timeout);
        return now_ < fixedAt ? now_ : fixedAt;
    }

    /// @dev When `g` expires (or expired): one duration for all grants, counted from the take.
    function _grantExpiry(Grant storage g) internal view returns (uint256) {
        return uint256(g.takenAt) + _grantDuration;
    }

    function _addSat(uint256 a, uint256 b) internal pure returns (uint256) {
        unchecked {
            uint256 c = a + b;
            if (c < a || c > type(uint48).max) return type(uint48).max;
            return c;
        }
    }
}
