// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IDtnAi} from "../dtn/IDtnAi.sol";

interface IStreakTarget {
    function getFromPool() external returns (uint256);
    function settleRequests(bytes32[] calldata ids) external returns (uint256);
    function makeAIRequestInSession(
        uint256 sessionId,
        string memory prompt,
        string memory model,
        IDtnAi.DtnRouting memory routing
    ) external payable returns (bytes32);
}

/// @title StreakAttacker
/// @notice Tests only: a pool taker that tries to hold the owner's close. Its requests carry no
///         callback gas (the callback starves, the answer stands, the request stays pending), and
///         `settleAndRequest` settles the last one and sends the next in the same transaction, so
///         the session's pending count never reads 0 between two transactions.
contract StreakAttacker {
    IStreakTarget public immutable manager;
    bytes32 public last;

    constructor(address manager_) {
        manager = IStreakTarget(manager_);
    }

    function take() external returns (uint256) {
        return manager.getFromPool();
    }

    function settleAndRequest(uint256 sessionId, string calldata model, IDtnAi.DtnRouting calldata routing)
        external
    {
        // settleRequests skips a request that is unanswered or settled already: the streak goes on
        bytes32[] memory ids = new bytes32[](1);
        ids[0] = last;
        manager.settleRequests(ids);
        last = manager.makeAIRequestInSession(sessionId, "again", model, routing);
    }
}
