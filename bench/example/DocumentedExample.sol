// Adapted copy of the DTN docs' "Session Management Example" contract, for bench/gas.py only.
// Changed ONLY as DESIGN.md says was done for its measurement on the real DTN:
//   1. imports: the project's contracts/dtn/ (IDtnAi, WithDtnAi, DtnDefaults) instead of
//      @deeptrust, and OpenZeppelin 5 paths (utils/ReentrancyGuard.sol);
//   2. routing: the bytes32[] argument is turned into a DtnRouting (DtnDefaults.namespaces).
// Every defect is kept on purpose (hard-coded 10**18 fees, renew that does not fund DTN,
// close that refunds nothing, open updateConfig, quadratic cleanup). Do not deploy.
// bench/gas.py compiles it from a temp dir in which ./dtn/ is a copy of contracts/dtn/.
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.0;
import "./dtn/IDtnAi.sol";
import "./dtn/WithDtnAi.sol";
import "./dtn/DtnDefaults.sol";
import "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
contract AdvancedSessionManager is WithDtnAi, ReentrancyGuard {
using SafeERC20 for IERC20;
// Events
event SessionCreated(uint256 sessionId, address owner, uint256 balance);
event SessionClosed(uint256 sessionId, address owner, uint256 refund);
event SessionRenewed(uint256 sessionId, uint256 newBalance);
event SessionPooled(uint256 sessionId, address user);
// Session information
struct SessionInfo {
uint256 sessionId;
address owner;
uint256 balance;
uint256 lastUsed;
bool active;
uint256 requestCount;
}
// State variables
mapping(uint256 => SessionInfo) public sessions;
mapping(address => uint256[]) public userSessions;
uint256[] public activeSessions;
// Configuration
uint256 public minSessionBalance = 10 * 10**18; // 10 USDT minimum
uint256 public maxSessionAge = 24 hours;
uint256 public sessionPoolSize = 5;
// Session pool for efficient reuse
uint256[] public sessionPool;
mapping(uint256 => bool) public isPooled;
constructor(address ai) {
setAi(ai);
}
// Create a new session with specified balance
function createSession(uint256 balance) public nonReentrant {
require(balance >= minSessionBalance, "Balance too low");
// Transfer tokens to fee target
IERC20(ai.feeToken()).safeTransferFrom(msg.sender, ai.feeTarget(), balance);
// Start the session
uint256 sessionId = ai.startUserSession();
// Store session information
sessions[sessionId] = SessionInfo({
sessionId: sessionId,
owner: msg.sender,
balance: balance,
lastUsed: block.timestamp,
active: true,
requestCount: 0
});
userSessions[msg.sender].push(sessionId);
activeSessions.push(sessionId);
emit SessionCreated(sessionId, msg.sender, balance);
}
// Get or create a session for the caller
function getOrCreateSession() public returns (uint256) {
// Check if user has an active session
uint256[] memory userSess = userSessions[msg.sender];
for (uint i = 0; i < userSess.length; i++) {
SessionInfo storage session = sessions[userSess[i]];
if (session.active && session.balance > 0) {
session.lastUsed = block.timestamp;
session.requestCount++;
return session.sessionId;
}
}
// Create new session with minimum balance
createSession(minSessionBalance);
return userSessions[msg.sender][userSessions[msg.sender].length - 1];
}
// Make AI request with automatic session management
function makeAIRequest(
string memory prompt,
string memory model,
bytes32[] memory routing
) public payable returns (bytes32) {
uint256 sessionId = getOrCreateSession();
string[] memory prompt_lines = new string[](1);
prompt_lines[0] = prompt;
bytes32 requestId = ai.request{value: msg.value}(
sessionId,
keccak256(abi.encodePacked(model)),
DtnDefaults.namespaces(routing),
IDtnAi.DtnRequest({
call: abi.encode(prompt_lines),
extraParams: "",
calltype: IDtnAi.CallType.DIRECT,
feePerByteReq: 0.001 * 10**18,
feePerByteRes: 0.001 * 10**18,
totalFeePerRes: 1 * 10**18
}),
IDtnAi.CallBack(
this.onSuccess.selector,
this.onError.selector,
address(this)
),
msg.sender,
msg.value
);
return requestId;
}
// Close a specific session
function closeSession(uint256 sessionId) public nonReentrant {
SessionInfo storage session = sessions[sessionId];
require(session.owner == msg.sender, "Not session owner");
require(session.active, "Session not active");
// Close the session
ai.closeUserSession(sessionId);
// Mark as inactive
session.active = false;
// Remove from active sessions
removeFromArray(activeSessions, sessionId);
// Remove from pool if pooled
if (isPooled[sessionId]) {
removeFromArray(sessionPool, sessionId);
isPooled[sessionId] = false;
}
emit SessionClosed(sessionId, msg.sender, session.balance);
}
// Close all sessions for a user
function closeAllSessions() public {
uint256[] memory userSess = userSessions[msg.sender];
for (uint i = 0; i < userSess.length; i++) {
SessionInfo storage session = sessions[userSess[i]];
if (session.active) {
closeSession(session.sessionId);
}
}
}
// Renew session with additional balance
function renewSession(uint256 sessionId, uint256 additionalBalance) public nonReentrant {
SessionInfo storage session = sessions[sessionId];
require(session.owner == msg.sender, "Not session owner");
require(session.active, "Session not active");
// Transfer additional tokens
IERC20(ai.feeToken()).safeTransferFrom(msg.sender, ai.feeTarget(), additionalBalance);
// Update session balance
session.balance += additionalBalance;
session.lastUsed = block.timestamp;
emit SessionRenewed(sessionId, session.balance);
}
// Add session to pool for reuse
function addToPool(uint256 sessionId) public {
SessionInfo storage session = sessions[sessionId];
require(session.owner == msg.sender, "Not session owner");
require(session.active, "Session not active");
require(!isPooled[sessionId], "Already pooled");
require(sessionPool.length < sessionPoolSize, "Pool full");
sessionPool.push(sessionId);
isPooled[sessionId] = true;
emit SessionPooled(sessionId, msg.sender);
}
// Get session from pool
function getFromPool() public returns (uint256) {
require(sessionPool.length > 0, "Pool empty");
uint256 sessionId = sessionPool[sessionPool.length - 1];
sessionPool.pop();
isPooled[sessionId] = false;
SessionInfo storage session = sessions[sessionId];
session.lastUsed = block.timestamp;
session.requestCount++;
return sessionId;
}
// Clean up old sessions
function cleanupOldSessions() public {
for (uint i = activeSessions.length; i > 0; i--) {
uint256 sessionId = activeSessions[i - 1];
SessionInfo storage session = sessions[sessionId];
if (block.timestamp - session.lastUsed > maxSessionAge) {
// Auto-close old sessions
ai.closeUserSession(sessionId);
session.active = false;
// Remove from arrays
removeFromArray(activeSessions, sessionId);
if (isPooled[sessionId]) {
removeFromArray(sessionPool, sessionId);
isPooled[sessionId] = false;
}
emit SessionClosed(sessionId, session.owner, session.balance);
}
}
}
// Get session statistics
function getSessionStats(uint256 sessionId) public view returns (
address owner,
uint256 balance,
uint256 lastUsed,
bool active,
uint256 requestCount
) {
SessionInfo storage session = sessions[sessionId];
return (
session.owner,
session.balance,
session.lastUsed,
session.active,
session.requestCount
);
}
// Get user session count
function getUserSessionCount(address user) public view returns (uint256) {
return userSessions[user].length;
}
// Get pool status
function getPoolStatus() public view returns (uint256 poolSize, uint256 maxSize) {
return (sessionPool.length, sessionPoolSize);
}
// Update configuration
function updateConfig(
uint256 _minSessionBalance,
uint256 _maxSessionAge,
uint256 _sessionPoolSize
) public {
minSessionBalance = _minSessionBalance;
maxSessionAge = _maxSessionAge;
sessionPoolSize = _sessionPoolSize;
}
// Callbacks
function onSuccess(bytes32 requestId) external onlyDtn {
// Handle successful response
(IDtnAi.ResponseStatus status, string memory message, bytes memory response) =
ai.fetchResponse(requestId);
// Process response as needed
emit AIResponseReceived(requestId, status, message);
}
function onError(bytes32 requestId) external onlyDtn {
// Handle error response
(IDtnAi.ResponseStatus status, string memory message, bytes memory response) =
ai.fetchResponse(requestId);
emit AIRequestFailed(requestId, message);
}
// Utility function to remove element from array
function removeFromArray(uint256[] storage arr, uint256 element) internal {
for (uint i = 0; i < arr.length; i++) {
if (arr[i] == element) {
arr[i] = arr[arr.length - 1];
arr.pop();
break;
}
}
}
// Events for AI responses
event AIResponseReceived(bytes32 requestId, IDtnAi.ResponseStatus status, string message);
event AIRequestFailed(bytes32 requestId, string error);
}
