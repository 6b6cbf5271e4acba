// Transactions: a DuckDB transaction that touches an attached database maps to one remote
// transaction, begun on first use and committed or rolled back with it.
#include "openduck.hpp"

#include "duckdb/main/attached_database.hpp"
#include "duckdb/main/config.hpp"
#include "duckdb/main/extension/extension_loader.hpp"
#include "duckdb/parser/parsed_data/create_schema_info.hpp"
#include "duckdb/parser/parsed_data/create_table_info.hpp"
#include "duckdb/storage/database_size.hpp"
#include "duckdb/catalog/catalog_entry/view_catalog_entry.hpp"
#include "duckdb/main/secret/secret.hpp"
#include "duckdb/parser/parsed_data/create_view_info.hpp"
#include "duckdb/main/secret/secret_manager.hpp"
#include "duckdb/parser/parsed_data/attach_info.hpp"
#include "duckdb/parser/parser.hpp"
#include "duckdb/storage/storage_extension.hpp"

namespace openduck {

string OdTransaction::Remote(ClientContext &context) {
	if (context.transaction.IsAutoCommit()) {
		return "";
	}
	lock_guard<mutex> guard(lock);
	if (remote.empty()) {
		char *id = nullptr;
		char *err = nullptr;
		if (openduck_begin(catalog.conn->Get(), &id, &err) != 0) {
			ThrowClientError(err, "BEGIN on the server");
		}
		remote = id;
		openduck_free_string(id);
	}
	return remote;
}

string OdTransaction::Of(ClientContext &context, Catalog &catalog) {
	return Transaction::Get(context, catalog).Cast<OdTransaction>().Remote(context);
}

Transaction &OdTransactionManager::StartTransaction(ClientContext &context) {
	auto transaction = make_uniq<OdTransaction>(*this, context, catalog);
	auto &result = *transaction;
	lock_guard<mutex> guard(lock);
	transactions[result] = std::move(transaction);
	return result;
}

unique_ptr<OdTransaction> OdTransactionManager::Take(Transaction &transaction) {
	lock_guard<mutex> guard(lock);
	auto found = transactions.find(transaction);
	if (found == transactions.end()) {
		return nullptr;
	}
	auto result = std::move(found->second);
	transactions.erase(found);
	return result;
}

ErrorData OdTransactionManager::CommitTransaction(ClientContext &, Transaction &transaction) {
	auto t = Take(transaction);
	if (!t || t->remote.empty()) {
		return ErrorData();
	}
	if (t->ran_ddl) {
		catalog.MarkStale();
	}
	char *err = nullptr;
	if (openduck_end(catalog.conn->Get(), t->remote.c_str(), 1, &err) != 0) {
		string message = err ? err : "unknown error";
		openduck_free_string(err);
		return ErrorData(IOException("COMMIT on the OpenDuck server failed: %s", message));
	}
	return ErrorData();
}

void OdTransactionManager::RollbackTransaction(Transaction &transaction) {
	auto t = Take(transaction);
	if (!t || t->remote.empty()) {
		return;
	}
	if (t->ran_ddl) {
		catalog.MarkStale();
	}
	char *err = nullptr;
	if (openduck_end(catalog.conn->Get(), t->remote.c_str(), 0, &err) != 0) {
		// The server rolls back transactions whose connection ends or that idle out.
		openduck_free_string(err);
	}
}

} // namespace openduck
