// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IDtnAi} from "./IDtnAi.sol";

/// @title WithDtnAi
/// @notice Base for dApp contracts that call DTN: holds the router and guards its callbacks.
abstract contract WithDtnAi {
    /// @notice The DTN router this contract talks to.
    IDtnAi public ai;

    /// @notice A DTN callback came from another address than the router.
    error NotDtn(address caller);
    /// @notice The router address given is zero.
    error ZeroDtnAddress();

    modifier onlyDtn() {
        if (msg.sender != address(ai)) revert NotDtn(msg.sender);
        _;
    }

    function setAi(address ai_) internal {
        if (ai_ == address(0)) revert ZeroDtnAddress();
        ai = IDtnAi(ai_);
    }
}
