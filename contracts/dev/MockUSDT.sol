// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title MockUSDT
/// @notice Fee token for local chains and tests: decimals fixed at deploy, open mint (a faucet).
/// @dev Like the real USDT/USDC it can block an address; blocked addresses cannot send or receive.
///      Like USDT it has a transfer fee (off by default): the recipient gets the amount minus the fee,
///      the fee is burned.
contract MockUSDT is ERC20 {
    uint8 private immutable _decimals;
    address public immutable admin;
    mapping(address => bool) public blocked;
    /// @notice Fee on transfers (not mints or burns) in basis points; 0 = none.
    uint256 public transferFeeBps;

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

    /// @notice Sets the transfer fee in basis points (admin only, at most 10%).
    function setTransferFeeBps(uint256 bps) external {
        require(msg.sender == admin, "Only admin");
        require(bps <= 1000, "Fee too high");
        transferFeeBps = bps;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (blocked[from]) revert AddressBlocked(from);
        if (blocked[to]) revert AddressBlocked(to);
        uint256 fee = from == address(0) || to == address(0) ? 0 : value * transferFeeBps / 10_000;
        if (fee > 0) super._update(from, address(0), fee);
        super._update(from, to, value - fee);
    }
}
