// The official Node SDK (npm `dodopayments`) against a live server: the same main methods as
// tests/sdk/test_conformance.py. Run by tests/sdk/test_node_sdk.py with DODO_SDK_DIR (where the
// package is installed), DODO_BASE_URL and DODO_API_KEY; exits 0 when every call succeeded and
// answered what was asked.
"use strict";

const path = require("node:path");
const assert = require("node:assert/strict");

const sdk = require(path.join(process.env.DODO_SDK_DIR, "node_modules", "dodopayments"));
const DodoPayments = sdk.default || sdk.DodoPayments || sdk;

const client = new DodoPayments({
  bearerToken: process.env.DODO_API_KEY,
  baseURL: process.env.DODO_BASE_URL,
  maxRetries: 0,
});

async function main() {
  const credits = await client.creditEntitlements.create({
    name: "Node credits",
    unit: "credits",
    precision: 0,
    rollover_enabled: false,
    overage_enabled: false,
  });
  assert.equal((await client.creditEntitlements.retrieve(credits.id)).unit, "credits");
  await client.creditEntitlements.update(credits.id, { description: "From Node" });
  const spare = await client.creditEntitlements.create({
    name: "Node spare",
    unit: "tokens",
    precision: 0,
    rollover_enabled: false,
    overage_enabled: false,
  });
  await client.creditEntitlements.delete(spare.id);
  await client.creditEntitlements.undelete(spare.id);
  const entitlements = await client.creditEntitlements.list({ page_size: 50 });
  assert.equal(entitlements.items.length, 2);

  const calls = await client.meters.create({
    name: "Node calls",
    event_name: "node.call",
    measurement_unit: "calls",
    aggregation: { type: "count" },
  });
  assert.equal((await client.meters.retrieve(calls.id)).event_name, "node.call");
  await client.meters.archive(calls.id);
  assert.deepEqual((await client.meters.list({ archived: true })).items.map((m) => m.id), [calls.id]);
  await client.meters.unarchive(calls.id);

  const product = await client.products.create({
    name: "Node plan",
    tax_category: "saas",
    price: {
      type: "usage_based_price",
      currency: "USD",
      fixed_price: 900,
      payment_frequency_count: 1,
      payment_frequency_interval: "Month",
      subscription_period_count: 1,
      subscription_period_interval: "Year",
      meters: [{ meter_id: calls.id, price_per_unit: "0.5", free_threshold: 2 }],
    },
    credit_entitlements: [{ credit_entitlement_id: credits.id, credits_amount: "25" }],
  });
  await client.products.update(product.product_id, { description: "Updated from Node" });
  assert.equal((await client.products.retrieve(product.product_id)).description, "Updated from Node");
  await client.products.archive(product.product_id);
  await client.products.unarchive(product.product_id);
  assert.equal((await client.products.list({ recurring: true })).items.length, 1);

  const customer = await client.customers.create({
    email: "node@example.com",
    name: "Node",
    preferred_locale: "fr",
  });
  await client.customers.update(customer.customer_id, { name: "Node JS" });
  assert.equal((await client.customers.retrieve(customer.customer_id)).name, "Node JS");
  assert.equal((await client.customers.list({ email: "node@example.com" })).items.length, 1);

  const created = await client.subscriptions.create({
    billing: { country: "US", city: "Austin" },
    customer: { customer_id: customer.customer_id },
    product_id: product.product_id,
    quantity: 1,
  });
  assert.equal(typeof created.payment_id, "string");
  const subscription = await client.subscriptions.retrieve(created.subscription_id);
  assert.equal(subscription.credit_entitlement_cart[0].remaining_balance, "25");
  const updated = await client.subscriptions.update(created.subscription_id, {
    metadata: { from: "node" },
    cancel_at_next_billing_date: true,
  });
  assert.equal(updated.cancel_at_next_billing_date, true);
  const listed = await client.subscriptions.list({ customer_id: customer.customer_id });
  assert.deepEqual(listed.items[0].discounts, []);

  const ingested = await client.usageEvents.ingest({
    events: [1, 2, 3].map((i) => ({
      event_id: `node-${i}`,
      customer_id: customer.customer_id,
      event_name: "node.call",
      metadata: { n: i },
    })),
  });
  assert.equal(ingested.ingested_count, 3);
  assert.equal((await client.usageEvents.list({ meter_id: calls.id })).items.length, 3);
  assert.equal((await client.usageEvents.retrieve("node-2")).metadata.n, 2);
  const history = await client.subscriptions.retrieveUsageHistory(created.subscription_id);
  assert.equal(history.items[0].meters[0].consumed_units, "3");
  const usage = await client.subscriptions.retrieveCreditUsage(created.subscription_id);
  assert.equal(usage.items[0].credit_entitlement_id, credits.id);

  const balances = client.creditEntitlements.balances;
  const params = { credit_entitlement_id: credits.id };
  const entry = await balances.createLedgerEntry(customer.customer_id, {
    ...params,
    entry_type: "credit",
    amount: "5",
    idempotency_key: "node-1",
  });
  assert.equal(entry.balance_after, "30");
  assert.equal((await balances.retrieve(customer.customer_id, params)).balance, "30");
  assert.equal((await balances.list(credits.id)).items.length, 1);
  assert.equal((await balances.listLedger(customer.customer_id, params)).items.length, 2);
  assert.equal((await balances.listGrants(customer.customer_id, params)).items.length, 2);
  const mine = await client.customers.listCreditEntitlements(customer.customer_id);
  assert.equal(mine.items[0].balance, "30");
  console.log("node sdk: every call succeeded");
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
