// The handler under the SDK's own test runtime and EVM client mock (@chainlink/cre-sdk/test).
import { describe, expect } from 'bun:test'
import { protoBigIntToBigint } from '@chainlink/cre-sdk'
import { EvmMock, REPORT_METADATA_HEADER_LENGTH, addContractMock, newTestRuntime, test } from '@chainlink/cre-sdk/test'
import { type Hex, bytesToHex, decodeAbiParameters } from 'viem'
import { CRE_WRITE_GAS_QUOTA, type Config, MANAGER_ABI, REPORT_PARAMS, configSchema, initWorkflow, networkOf, onCron } from './workflow'

const BASE = networkOf('ethereum-mainnet-base-1')
const CONFIG: Config = {
	schedule: '0 */10 * * * *',
	chainSelectorName: 'ethereum-mainnet-base-1',
	managerAddress: '0x1111111111111111111111111111111111111111',
	receiverAddress: '0x2222222222222222222222222222222222222222',
	maxSessions: 50,
	writeGasLimit: '5000000',
}
const SLOT = 1_780_000_000n

function cron(seconds = SLOT) {
	return { scheduledExecutionTime: { seconds, nanos: 0 } } as never
}

function setup(needed: boolean) {
	const evm = EvmMock.testInstance(BASE.chainSelector.selector)
	const manager = addContractMock(evm, { address: CONFIG.managerAddress as Hex, abi: MANAGER_ABI })
	let checks = 0
	manager.checkUpkeep = () => {
		checks++
		return [needed, '0x']
	}
	const blocks: bigint[] = []
	const answer = evm.callContract!
	evm.callContract = (req) => {
		blocks.push(protoBigIntToBigint(req.blockNumber!))
		return answer(req)
	}
	const writes: { raw: Uint8Array; receiver: string; gas: bigint }[] = []
	const receiver = addContractMock(evm, { address: CONFIG.receiverAddress as Hex, abi: [] })
	receiver.writeReport = (input) => {
		writes.push({ raw: input.report.rawReport, receiver: bytesToHex(input.receiver), gas: input.gasConfig.gasLimit })
		return { txStatus: 'TX_STATUS_SUCCESS', txHash: Buffer.from('ab'.repeat(32), 'hex').toString('base64') }
	}
	return { evm, writes, blocks, checks: () => checks }
}

describe('onCron', () => {
	test('an idle session: one read, one report for this chain, slot and bound, within the gas quota', () => {
		const { writes, checks, blocks } = setup(true)
		const runtime = newTestRuntime(null, {}, CONFIG)
		expect(onCron(runtime, cron())).toBe(`0x${'ab'.repeat(32)}`)
		expect(checks()).toBe(1)
		expect(blocks).toEqual([-3n]) // LAST_FINALIZED_BLOCK_NUMBER
		expect(writes).toHaveLength(1)
		expect(writes[0].receiver).toBe(CONFIG.receiverAddress)
		expect(writes[0].gas).toBe(5_000_000n)
		const body = bytesToHex(writes[0].raw.slice(REPORT_METADATA_HEADER_LENGTH))
		expect(decodeAbiParameters(REPORT_PARAMS, body)).toEqual([8453n, SLOT, 50n])
	})

	test('nothing idle: nothing is written', () => {
		const { writes, checks } = setup(false)
		const runtime = newTestRuntime(null, {}, CONFIG)
		expect(onCron(runtime, cron())).toBe('no idle session')
		expect(checks()).toBe(1)
		expect(writes).toHaveLength(0)
	})

	test('a reverted delivery fails the run (CRE shows it as failed)', () => {
		const { evm } = setup(true)
		evm.writeReport = () => ({ txStatus: 'TX_STATUS_REVERTED', errorMessage: 'execution reverted' })
		const runtime = newTestRuntime(null, {}, CONFIG)
		expect(() => onCron(runtime, cron())).toThrow(/not delivered \(REVERTED\)/)
	})

	test('a report the receiver refused fails the run', () => {
		const { evm } = setup(true)
		evm.writeReport = () => ({
			txStatus: 'TX_STATUS_SUCCESS',
			receiverContractExecutionStatus: 'RECEIVER_CONTRACT_EXECUTION_STATUS_REVERTED',
		})
		const runtime = newTestRuntime(null, {}, CONFIG)
		expect(() => onCron(runtime, cron())).toThrow(/refused by the receiver/)
	})

	test('a cron payload without a time sends nothing', () => {
		const { writes } = setup(true)
		const runtime = newTestRuntime(null, {}, CONFIG)
		expect(() => onCron(runtime, {} as never)).toThrow(/scheduled execution time/)
		expect(writes).toHaveLength(0)
	})
})

describe('config', () => {
	test('the example configs are valid', async () => {
		for (const name of ['config.base.json', 'config.base-sepolia.json']) {
			const parsed = configSchema.safeParse(await Bun.file(`${import.meta.dir}/${name}`).json())
			expect(parsed.success).toBe(true)
		}
	})

	test('refuses a zero address, a gas limit over the quota and an unknown chain', () => {
		expect(configSchema.safeParse({ ...CONFIG, receiverAddress: `0x${'0'.repeat(40)}` }).success).toBe(false)
		expect(configSchema.safeParse({ ...CONFIG, writeGasLimit: String(CRE_WRITE_GAS_QUOTA + 1n) }).success).toBe(false)
		expect(configSchema.safeParse({ ...CONFIG, maxSessions: 0 }).success).toBe(false)
		expect(() => initWorkflow({ ...CONFIG, chainSelectorName: 'no-such-chain' })).toThrow(/unknown CRE chain/)
	})

	test('one cron handler on the configured schedule', () => {
		const handlers = initWorkflow(CONFIG)
		expect(handlers).toHaveLength(1)
		expect(handlers[0].fn).toBe(onCron)
		expect((handlers[0].trigger as { config?: { schedule?: string } }).config?.schedule).toBe(CONFIG.schedule)
	})
})
