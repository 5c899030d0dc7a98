// The dtnsess keeper workflow: on a cron schedule, read the manager's checkUpkeep() (the read
// `dtnsess cleanup --check` makes) and, when a session is idle, deliver one signed report to the
// CleanupReceiver, which runs the manager's bounded cleanup. Nothing is written when nothing is idle.
import {
	type CronPayload,
	CronCapability,
	EVMClient,
	LAST_FINALIZED_BLOCK_NUMBER,
	type Runtime,
	TxStatus,
	bytesToHex,
	encodeCallMsg,
	getNetwork,
	handler,
	prepareReportRequest,
} from '@chainlink/cre-sdk'
import { EVM_PB } from '@chainlink/cre-sdk/pb'
import {
	type Address,
	type Hex,
	decodeFunctionResult,
	encodeAbiParameters,
	encodeFunctionData,
	isAddress,
	parseAbi,
	zeroAddress,
} from 'viem'
import { z } from 'zod'

// CRE's per-transaction gas quota for EVM writes (PerWorkflow.ChainWrite.EVM.TransactionGasLimit,
// docs.chain.link/cre/service-quotas): a report asking for more is never delivered.
export const CRE_WRITE_GAS_QUOTA = 5_000_000n

const address = z.string().refine((v) => isAddress(v, { strict: false }) && !/^0x0{40}$/i.test(v), {
	message: 'must be a contract address (0x and 40 hex digits, not zero)',
})

export const configSchema = z.object({
	// Cron with 5 or 6 fields (seconds first); CRE fires at most every 30 seconds.
	schedule: z.string().min(1),
	// CRE's chain name, e.g. "ethereum-mainnet-base-1" (Base) or "ethereum-testnet-sepolia-base-1".
	chainSelectorName: z.string().min(1),
	// The AdvancedSessionManager whose idle sessions are closed.
	managerAddress: address,
	// The CleanupReceiver the report goes to (it calls the manager).
	receiverAddress: address,
	// Sessions one report may close (the receiver caps it again with its owner's maxBatch).
	maxSessions: z.number().int().positive(),
	// Gas for the forwarder's transaction; at most CRE's quota.
	writeGasLimit: z
		.string()
		.regex(/^[1-9][0-9]*$/, 'must be a whole number of gas, as a string')
		.refine((v) => BigInt(v) <= CRE_WRITE_GAS_QUOTA, `must not exceed CRE's quota of ${CRE_WRITE_GAS_QUOTA} gas`),
})
export type Config = z.infer<typeof configSchema>

export const MANAGER_ABI = parseAbi([
	'function checkUpkeep(bytes) view returns (bool upkeepNeeded, bytes performData)',
])

// What CleanupReceiver.onReport decodes: the chain the report is for (against cross-chain
// replay), the cron slot it was made for (against same-chain replay), the bound.
export const REPORT_PARAMS = [
	{ name: 'chainId', type: 'uint256' },
	{ name: 'scheduledAt', type: 'uint256' },
	{ name: 'maxSessions', type: 'uint256' },
] as const

export function networkOf(chainSelectorName: string) {
	const network = getNetwork({ chainFamily: 'evm', chainSelectorName })
	if (!network) throw new Error(`unknown CRE chain name: ${chainSelectorName}`)
	return network
}

/** checkUpkeep() on the manager: true when its least recently used session is idle. Read at the
 *  last finalized block, which every node of the DON sees alike (a session idle for a day is still
 *  idle minutes later; the manager decides again on chain). */
export function upkeepNeeded(runtime: Runtime<Config>, evm: EVMClient): boolean {
	const reply = evm
		.callContract(runtime, {
			call: encodeCallMsg({
				from: zeroAddress,
				to: runtime.config.managerAddress as Address,
				data: encodeFunctionData({ abi: MANAGER_ABI, functionName: 'checkUpkeep', args: ['0x'] }),
			}),
			blockNumber: LAST_FINALIZED_BLOCK_NUMBER,
		})
		.result()
	const [needed] = decodeFunctionResult({
		abi: MANAGER_ABI,
		functionName: 'checkUpkeep',
		data: bytesToHex(reply.data) as Hex,
	})
	return needed
}

export function reportBody(chainId: bigint, scheduledAt: bigint, maxSessions: number): Hex {
	return encodeAbiParameters(REPORT_PARAMS, [chainId, scheduledAt, BigInt(maxSessions)])
}

export function onCron(runtime: Runtime<Config>, payload: CronPayload): string {
	const config = runtime.config
	const network = networkOf(config.chainSelectorName)
	const evm = new EVMClient(network.chainSelector.selector)
	if (!upkeepNeeded(runtime, evm)) {
		runtime.log('no idle session: nothing sent')
		return 'no idle session'
	}
	const scheduledAt = payload.scheduledExecutionTime?.seconds
	if (scheduledAt === undefined) throw new Error('cron payload without a scheduled execution time')
	const report = runtime
		.report(prepareReportRequest(reportBody(BigInt(network.chainId), scheduledAt, config.maxSessions)))
		.result()
	const write = evm
		.writeReport(runtime, {
			receiver: config.receiverAddress,
			report,
			gasConfig: { gasLimit: config.writeGasLimit },
		})
		.result()
	if (write.txStatus !== TxStatus.SUCCESS) {
		throw new Error(`cleanup report not delivered (${TxStatus[write.txStatus]}): ${write.errorMessage ?? ''}`)
	}
	// The forwarder's transaction succeeds even when the receiver refuses the report (wrong workflow
	// identity, stale slot): the run must still fail, so the operator sees it.
	if (write.receiverContractExecutionStatus === EVM_PB.ReceiverContractExecutionStatus.REVERTED) {
		throw new Error(`cleanup report refused by the receiver: ${write.errorMessage ?? ''}`)
	}
	const tx = write.txHash ? bytesToHex(write.txHash) : '(no hash)'
	runtime.log(`cleanup report delivered for slot ${scheduledAt}: ${tx}`)
	return tx
}

export function initWorkflow(config: Config) {
	networkOf(config.chainSelectorName) // fail at deploy time, not at the first run
	return [handler(new CronCapability().trigger({ schedule: config.schedule }), onCron)]
}
