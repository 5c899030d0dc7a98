// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title MockUSDT
/// @notice Fee token for local chains and tests: decimals fixed at deploy, open mint (a faucet).
/// @dev Like the real USDT/USDC it can block an address; blocked addresses cannot send or receive.
contract MockUSDT is ERC20 {
    uint8 private immutable _decimals;
    address public immutable admin;
    mapping(address => bool) public blocked;

    error AddressBlocked(address account);

    constructor(string memory name_, string memory symbol_, uint8 decimals_) ERC20(name_, symbol_) {
        _decimals = decimals_;
        admin = msg.sender;
    }

    /// @notice The decimals chosen at deploy (6 like USDT/USDC by default in the devnet).
    function decimals() public view override returns (uint8) {
        return _decimals;
    }

    /// @notice Mints `amount` base units to `to`; open to anyone on a dev chain.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Blocks or unblocks an address (admin only), like a stablecoin blacklist.
    function setBlocked(address account, bool isBlocked) external {
        require(msg.sender == admin, "Only admin");
        blocked[account] = isBlocked;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (blocked[from]) revert AddressBlocked(from);
        if (blocked[to]) revert AddressBlocked(to);
        super._update(from, to, value);
    }
}
