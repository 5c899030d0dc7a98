// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IDtnAi} from "./IDtnAi.sol";

/// @title WithDtnAi
/// @notice Base for dApp contracts that call DTN: holds the router and guards its callbacks.
abstract contract WithDtnAi {
    /// @notice The DTN router this contract talks to.
    IDtnAi public ai;

    modifier onlyDtn() {
        require(msg.sender == address(ai), "Only DTN can call this function");
        _;
    }

    function setAi(address ai_) internal {
        require(ai_ != address(0), "DTN address is zero");
        ai = IDtnAi(ai_);
    }
}
