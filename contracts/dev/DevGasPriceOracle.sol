// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title DevGasPriceOracle
/// @notice A stand-in for the OP-stack `GasPriceOracle` predeploy
///         (0x420000000000000000000000000000000000000F on Base and OP Mainnet), for tests and
///         local chains: placed at that address with `anvil_setCode`, it makes a dev chain charge
///         (in the client's eyes) an L1 data fee the way an OP-stack chain does.
/// @dev The real oracle prices the compressed transaction at the L1 base and blob fees; this one
///      charges a fixed fee per byte so tests can compute it. No constructor and no storage:
///      `anvil_setCode` installs runtime code only.
contract DevGasPriceOracle {
    /// @notice Wei of L1 data fee per byte of transaction.
    uint256 public constant FEE_PER_BYTE = 1e12;
    /// @notice Bytes a signature adds to an unsigned transaction (what the real oracle adds).
    uint256 public constant SIGNATURE_BYTES = 68;

    /// @notice The L1 data fee of an unsigned, RLP-encoded transaction.
    function getL1Fee(bytes calldata data) external pure returns (uint256) {
        return (data.length + SIGNATURE_BYTES) * FEE_PER_BYTE;
    }

    /// @notice An upper bound of the L1 data fee of an unsigned transaction of `txSize` bytes.
    function getL1FeeUpperBound(uint256 txSize) external pure returns (uint256) {
        return (txSize + SIGNATURE_BYTES) * FEE_PER_BYTE;
    }

    /// @notice Like the real oracle after Ecotone.
    function isEcotone() external pure returns (bool) {
        return true;
    }

    /// @notice Like the real oracle after Fjord (getL1FeeUpperBound exists since Fjord).
    function isFjord() external pure returns (bool) {
        return true;
    }

    /// @notice The real oracle's decimals (its scalars are fixed-point with 6 decimals).
    function decimals() external pure returns (uint256) {
        return 6;
    }
}
