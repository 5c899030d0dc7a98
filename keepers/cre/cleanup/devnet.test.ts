// The handler against a real chain (the dtnsess devnet / a test Anvil) through a small adapter: the
// SDK's EVM client mock answers callContract with eth_call and delivers writeReport through the
// LocalForwarder stand-in, with the report header (workflow identity) a DON would sign.
// Skipped unless DTNSESS_KEEPER_RPC is set; tests/test_keeper_workflow.py sets it up and runs it.
import { describe, expect } from 'bun:test'
import { protoBigIntToBigint } from '@chainlink/cre-sdk'
import { EvmMock, REPORT_METADATA_HEADER_LENGTH, newTestRuntime, test } from '@chainlink/cre-sdk/test'
import { type Hex, bytesToHex, concat, encodeFunctionData, numberToHex, pad, parseAbi, toHex } from 'viem'
import { type Config, networkOf, onCron } from './workflow'

const env = process.env
const FORWARDER_ABI = parseAbi(['function report(address receiver, bytes rawReport, bytes reportContext, bytes[] signatures)'])
// keccak256("ReportProcessed(address,bytes32,bytes2,bool)")
const REPORT_PROCESSED = '0x3617b009e9785c42daebadb6d3fb553243a4bf586d07ea72d65d80013ce116b5'

/** A synchronous JSON-RPC call (the mock's handlers are synchronous): a child bun does the fetch. */
function rpc(method: string, params: unknown[]): any {
	const script =
		"const r = await fetch(process.env.RPC_URL, {method: 'POST', headers: {'content-type': 'application/json'}, body: process.env.RPC_BODY}); process.stdout.write(await r.text())"
	const out = Bun.spawnSync([process.execPath, '-e', script], {
		env: { ...env, RPC_URL: env.DTNSESS_KEEPER_RPC, RPC_BODY: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }) },
	})
	const reply = JSON.parse(out.stdout.toString())
	if (reply.error) throw new Error(`${method}: ${reply.error.message}`)
	return reply.result
}

/** The 109-byte header KeystoneForwarder parses: what the DON signs for this workflow. */
function header(executionId: Hex): Hex {
	return concat([
		'0x01', // version
		executionId,
		numberToHex(Number(env.DTNSESS_KEEPER_SLOT), { size: 4 }), // timestamp
		numberToHex(1, { size: 4 }), // DON id
		numberToHex(1, { size: 4 }), // DON config version
		env.DTNSESS_KEEPER_WORKFLOW_ID as Hex,
		env.DTNSESS_KEEPER_WORKFLOW_NAME as Hex,
		env.DTNSESS_KEEPER_WORKFLOW_OWNER as Hex,
		'0x0001', // report id
	])
}

function attach(evm: EvmMock) {
	evm.callContract = (req) => {
		const call = { to: bytesToHex(req.call!.to), data: bytesToHex(req.call!.data) }
		// the SDK's block constants: LAST_FINALIZED_BLOCK_NUMBER is -3, LATEST_BLOCK_NUMBER -2
		const n = req.blockNumber ? protoBigIntToBigint(req.blockNumber) : -2n
		const tag = n === -3n ? 'finalized' : n === -2n ? 'latest' : numberToHex(n)
		return { data: Buffer.from((rpc('eth_call', [call, tag]) as string).slice(2), 'hex').toString('base64') }
	}
	evm.writeReport = (req) => {
		const body = bytesToHex(req.report!.rawReport.slice(REPORT_METADATA_HEADER_LENGTH))
		const raw = concat([header(pad(toHex(Number(env.DTNSESS_KEEPER_SLOT)))), body])
		const hash = rpc('eth_sendTransaction', [
			{
				from: env.DTNSESS_KEEPER_TRANSMITTER,
				to: env.DTNSESS_KEEPER_FORWARDER,
				gas: numberToHex(req.gasConfig!.gasLimit),
				data: encodeFunctionData({
					abi: FORWARDER_ABI,
					functionName: 'report',
					args: [bytesToHex(req.receiver), raw, '0x', []],
				}),
			},
		])
		const receipt = rpc('eth_getTransactionReceipt', [hash])
		const processed = receipt.logs.find((l: { topics: string[] }) => l.topics[0] === REPORT_PROCESSED)
		const delivered = processed !== undefined && BigInt(processed.data) === 1n
		return {
			txStatus: receipt.status === '0x1' ? 'TX_STATUS_SUCCESS' : 'TX_STATUS_REVERTED',
			receiverContractExecutionStatus: delivered
				? 'RECEIVER_CONTRACT_EXECUTION_STATUS_SUCCESS'
				: 'RECEIVER_CONTRACT_EXECUTION_STATUS_REVERTED',
			txHash: Buffer.from(hash.slice(2), 'hex').toString('base64'),
		}
	}
}

describe.skipIf(!env.DTNSESS_KEEPER_RPC)('on the devnet', () => {
	test('one run of the handler delivers a report through the forwarder stand-in', () => {
		const config: Config = {
			schedule: '*/30 * * * * *',
			chainSelectorName: 'anvil-devnet',
			managerAddress: env.DTNSESS_KEEPER_MANAGER!,
			receiverAddress: env.DTNSESS_KEEPER_RECEIVER!,
			maxSessions: Number(env.DTNSESS_KEEPER_MAX ?? 50),
			writeGasLimit: '5000000',
		}
		attach(EvmMock.testInstance(networkOf(config.chainSelectorName).chainSelector.selector))
		const runtime = newTestRuntime(null, {}, config)
		const slot = { scheduledExecutionTime: { seconds: BigInt(env.DTNSESS_KEEPER_SLOT!), nanos: 0 } } as never
		const out = onCron(runtime, slot)
		console.log(`DTNSESS_KEEPER_RESULT ${out}`)
		expect(out).toMatch(/^0x[0-9a-f]{64}$|^no idle session$/)
	})
})
